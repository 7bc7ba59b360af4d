"""A content-keyed on-disk cache for expensive arrays (embeddings), written atomically."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """`$BENCH_CACHE_DIR`, else `.cache/` in the working directory (git-ignored)."""
    return Path(os.environ.get("BENCH_CACHE_DIR", ".cache"))


def content_key(parts: dict) -> str:
    """A stable hash of a JSON-serializable description of an artifact."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def atomic_write_bytes(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` then rename tmp over `path`, so readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as handle:  # a handle, since np.save would append ".npy" to the temp name
        np.save(handle, array)


def cached_array(kind: str, parts: dict, compute: Callable[[], np.ndarray]) -> tuple[np.ndarray, bool]:
    """Load the array stored under the key of `parts`, or compute and store it. Returns (array, was_cached)."""
    key = content_key(parts)
    path = cache_dir() / kind / f"{key}.npy"
    if path.exists():
        return np.load(path), True
    array = compute()
    atomic_write_bytes(path, lambda tmp: _save_npy(tmp, array))
    atomic_write_bytes(path.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(parts, indent=1, default=str)))
    log.info("cached %s %s", kind, path)
    return array, False
