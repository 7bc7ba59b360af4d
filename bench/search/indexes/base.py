"""The protocol every ANN backend implements, and the parameter checks they share.

As in ann-benchmarks: a backend is constructed with its build parameters, `fit` builds it once,
`set_search` applies one tuple of search parameters (and K), then `query` answers one query on one
thread (the latency path) and `batch_query` answers many on a stated number of threads (throughput).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import tempfile
import typing
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench.data.rankings import Neighbors


class ParamError(ValueError):
    """An invalid build or search parameter; the message names it."""


class AllowedIds:
    """The corpus rows a filtered query may return: sorted ids, a boolean mask, and the library-side
    forms of them (built once per filter, outside the timed path, as a service would cache them)."""

    def __init__(self, mask: np.ndarray):
        self.mask = np.asarray(mask, dtype=bool)
        self.ids = np.flatnonzero(self.mask).astype(np.int64)
        self._forms: dict[str, Any] = {}

    def accepts(self, label: int) -> bool:
        return bool(self.mask[label])

    def form(self, library: str, make):
        """This filter as `library` takes it, made by `make(self)` on first use and kept (outside timed paths)."""
        if library not in self._forms:
            self._forms[library] = make(self)
        return self._forms[library]

    @property
    def id_list(self) -> list[int]:
        """The allowed ids as a Python list (what a database client sends as an array parameter)."""
        return self.form("list", lambda allowed: allowed.ids.tolist())

    @property
    def faiss_selector(self):
        def make(allowed):
            import faiss

            return faiss.IDSelectorBatch(allowed.ids)

        return self.form("faiss", make)


class Params:
    """Typed parameters of a backend, build or search: a frozen dataclass per backend declares each name, its
    type and its default in one place (a field without a default is required). `parse` checks a config table
    against it; `as_dict` is what rows record."""

    @classmethod
    def parse(cls, backend: str, kind: str, given: dict[str, Any]):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(given) - set(fields))
        if unknown:
            raise ParamError(f"{backend}: unknown {kind} parameter(s) {unknown}; expected a subset of {sorted(fields)}")
        hints = typing.get_type_hints(cls)
        checked = {name: _typed(backend, kind, name, value, hints[name]) for name, value in given.items()}
        missing = [name for name, f in fields.items() if name not in checked
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise ParamError(f"{backend}: {kind} parameter '{missing[0]}' is required")
        return cls(**checked)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class NoParams(Params):
    """A backend without parameters of this kind."""


def _typed(backend: str, kind: str, name: str, value: Any, hint: Any) -> Any:
    """`value` checked against a field's type (`int`, `float`, `str`, `bool`, or one of them `| None`)."""
    want = next(t for t in typing.get_args(hint) if t is not type(None)) if typing.get_args(hint) else hint
    where = f"{backend}: {kind} parameter '{name}'"
    if want is bool and not isinstance(value, bool):
        raise ParamError(f"{where} must be true or false, got {value!r}")
    if want is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ParamError(f"{where} must be an integer, got {value!r}")
    if want is str and not isinstance(value, str):
        raise ParamError(f"{where} must be a string, got {value!r}")
    if want is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ParamError(f"{where} must be a number, got {value!r}")
    return want(value)


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ParamError(message)


def check_choice(backend: str, parameter: str, value: str, choices) -> None:
    require(value in choices, f"{backend}: {parameter} '{value}' must be one of {list(choices)}")


class AnnIndex(ABC):
    """An index over L2-normalized vectors, scored by inner product.

    A backend owns what it knows: its typed `Build` and `Search` parameters (with defaults), their checks,
    its memory model (`memory_bytes`), its setting on the latency
    gate's workload (`gate_params`) and how to grow its candidate lists to K (`search_at_least`)."""

    name: ClassVar[str]
    Build: ClassVar[type[Params]] = NoParams
    Search: ClassVar[type[Params]] = NoParams
    weight_chosen_on: ClassVar[str] = ""  # a fusion's weight tuned on dev queries: "dev" (bench.search.hybrid)
    gate_params: ClassVar[tuple[dict, dict] | None] = None  # build, search on the latency gate's workload
    memory_model_error: ClassVar[float | None] = 0.01  # how far `memory_bytes` may be from the built index (relative);
    # None: no memory model (an engine whose files are preallocated)
    size_method: ClassVar[str] = "serialized"  # how `size_bytes` is measured (rows' index_bytes_method)

    def __init__(self, **build: Any):
        self.build = self.Build.parse(self.name, "build", build)
        self.n = 0
        self.k = 0

    def check_build(self, n: int) -> None:
        """Reject build parameters that cannot work on `n` vectors (before any expensive work)."""

    def check_search(self, k: int, search: dict[str, Any]) -> dict[str, Any]:
        """The effective search parameters (defaults resolved) for top-`k`; subclasses add their own rules."""
        checked = self.Search.parse(self.name, "search", search)
        require(k >= 1, f"{self.name}: K must be >= 1, got {k}")
        if self.n:
            require(k <= self.n, f"{self.name}: K ({k}) exceeds the number of indexed vectors ({self.n})")
        return self.effective_search(k, checked)

    def effective_search(self, k: int, search: Params) -> dict[str, Any]:
        """The parameters that actually run for top-`k` (a default that depends on K or on the build resolved)."""
        return search.as_dict()

    def search_at_least(self, k: int, search: dict[str, Any]) -> dict[str, Any]:
        """`search` with candidate lists grown to at least `k` where the library needs it (filters inflate K)."""
        return dict(search)

    def memory_bytes(self, n: int, dim: int) -> int:
        """Predicted serialized size for `n` vectors of `dim` dimensions, from the library's layout."""
        raise ParamError(f"no memory model for backend '{self.name}'")

    def fit(self, vectors: np.ndarray, threads: int) -> None:
        """Build over `vectors` (float32, L2-normalized) using `threads` threads."""
        self.check_build(len(vectors))
        self.n = len(vectors)
        self._fit(np.ascontiguousarray(vectors, dtype=np.float32), threads)

    def set_search(self, k: int, **search: Any) -> None:
        """Apply one search-parameter tuple for top-`k` queries."""
        self.k = k
        self._set_search(k, self.check_search(k, search))

    def search_description(self, search: dict[str, Any]) -> dict[str, Any]:
        """What the results rows record of a search-parameter tuple (wrappers add their own settings)."""
        return dict(search)

    @abstractmethod
    def _fit(self, vectors: np.ndarray, threads: int) -> None: ...

    @abstractmethod
    def _set_search(self, k: int, search: dict[str, Any]) -> None: ...

    @abstractmethod
    def query(self, vector: np.ndarray) -> np.ndarray:
        """Top-k row ids for one query vector (shape (d,)), on one thread: the timed latency path."""

    @abstractmethod
    def batch_query(self, vectors: np.ndarray, threads: int) -> Neighbors:
        """Top-k for every row of `vectors`, on `threads` threads."""

    @abstractmethod
    def size_bytes(self) -> int:
        """Serialized size of the built index in bytes."""

    native_filter: ClassVar[str] = ""  # how the library filters during search ("" = it cannot)

    def cached_bytes(self) -> int | None:
        """A served engine: bytes of the index in the server's own buffer cache now; None for an in-process index
        (its memory is the process's)."""
        return None

    def close(self) -> None:
        """Release what the index holds outside this process (a server it started); in-process indexes hold nothing."""

    def filtered_query(self, vector: np.ndarray, allowed: AllowedIds) -> np.ndarray:
        """Top-k among `allowed` rows only, filtered inside the library's search, on one thread."""
        raise ParamError(f"{self.name}: the library has no filtered search")


@contextlib.contextmanager
def quiet_fd2():
    """C++ libraries (ScaNN, faiss k-means) log straight to file descriptor 2; keep it, show it only on failure."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def serialized_size(save) -> int:
    """Bytes written by `save(folder)` into an empty temporary folder."""
    with tempfile.TemporaryDirectory() as folder:
        save(folder)
        return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def pad_to_k(ids, k: int) -> np.ndarray:
    """One query's ids as int64, padded with -1 to `k` (engines return fewer when fewer match)."""
    ids = np.asarray(ids, dtype=np.int64)
    return np.pad(ids, (0, k - len(ids)), constant_values=-1)


def one_at_a_time(items, k: int, search) -> Neighbors:
    """Neighbors of every item from `search(item) -> (ids, scores)`, one call after another (engines whose client
    answers one query per call); short answers padded as missing."""
    ids = np.full((len(items), k), -1, dtype=np.int64)
    scores = np.zeros((len(items), k), dtype=np.float32)
    for row, item in enumerate(items):
        found, score = search(item)
        ids[row, : len(found)], scores[row, : len(found)] = found, score
    return pad_missing(ids, scores, ids < 0)


def pad_missing(ids: np.ndarray, scores: np.ndarray, missing: np.ndarray) -> Neighbors:
    """Mark `missing` slots as id -1 / score NaN (libraries pad short results differently)."""
    ids = np.where(missing, -1, ids).astype(np.int64)
    scores = np.where(missing, np.nan, scores).astype(np.float32)
    return Neighbors(ids, scores)


