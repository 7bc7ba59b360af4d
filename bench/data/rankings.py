"""A ranking of the corpus per query: what every first stage returns and every metric reads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Neighbors:
    """Top-K per query: row ids into the corpus (-1 where fewer than K came back) and inner-product scores."""

    ids: np.ndarray  # (n_queries, k) int64
    scores: np.ndarray  # (n_queries, k) float32, NaN where ids == -1
