"""Qdrant Edge (`qdrant-edge-py`): Qdrant's storage and HNSW engine embedded in the process, through its own Python API
(a shard in a temporary folder, points upserted in batches, `optimize` building the HNSW graph, `query` with
`SearchParams(hnsw_ef)`). Build `m`, `ef_construct`; search `hnsw_ef` (>= K; default K). Filters natively: a
`Filter(must=[HasIdCondition(ids)])` in the query, built once per filter (Qdrant plans it: the HNSW graph with the
condition checked during the walk, or the passing points scanned when few pass). Scores: dot product on the
unit vectors. Size: the bytes the shard's files occupy on disk (allocated blocks: Qdrant preallocates its mmap files,
so their apparent size overstates what is written); no memory model (`memory_model_error` None).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.search.indexes.base import AnnIndex, Neighbors, Params, one_at_a_time, pad_to_k
from bench.search.indexes.hnsw import check_graph_build, ef_at_least, effective_ef

BATCH = 1000


@dataclass(frozen=True)
class QdrantBuild(Params):
    m: int = 16
    ef_construct: int = 100


@dataclass(frozen=True)
class QdrantSearch(Params):
    hnsw_ef: int | None = None  # None: K


class QdrantEdgeHNSW(AnnIndex):
    name = "qdrant_edge"
    Build = QdrantBuild
    Search = QdrantSearch
    gate_params = ({"m": 16, "ef_construct": 100}, {"hnsw_ef": 50})
    memory_model_error = None
    size_method = "allocated bytes on disk"
    native_filter = "Filter(must=[HasIdCondition]) in the query, planned by Qdrant (filtered HNSW or a scan)"

    def check_build(self, n: int) -> None:
        check_graph_build(self.name, self.build.m, self.build.ef_construct)

    def effective_search(self, k, search):
        return {"hnsw_ef": effective_ef(self.name, k, search.hnsw_ef)}

    def search_at_least(self, k, search):
        return ef_at_least(k, search, "hnsw_ef")

    def _fit(self, vectors: np.ndarray, threads: int) -> None:
        import qdrant_edge as q

        self.close()
        self.folder = Path(tempfile.mkdtemp(prefix="bench-qdrant-"))
        config = q.EdgeConfig(vectors=q.EdgeVectorParams(size=vectors.shape[1], distance=q.Distance.Dot),
                              hnsw_config=q.HnswIndexConfig(m=self.build.m, ef_construct=self.build.ef_construct,
                                                            full_scan_threshold=1, max_indexing_threads=threads),
                              optimizers=q.EdgeOptimizersConfig(indexing_threshold=1, default_segment_number=1),
                              max_search_threads=1)
        self.shard = q.EdgeShard.create(str(self.folder), config)
        for start in range(0, len(vectors), BATCH):
            self.shard.update(q.UpdateOperation.upsert_points(
                [q.Point(i, vectors[i].tolist()) for i in range(start, min(start + BATCH, len(vectors)))]))
        self.shard.optimize()  # builds the HNSW graph (below it a segment is searched exhaustively)
        self._query = lambda vector, where=None: q.QueryRequest(limit=self.k, query=q.Query.Nearest(vector.tolist()),
                                                                params=self.params, filter=where)
        self._params = q.SearchParams
        self._filter = lambda allowed: q.Filter(must=[q.HasIdCondition(point_ids=set(allowed.id_list))])

    def _set_search(self, k, search) -> None:
        self.params = self._params(hnsw_ef=search["hnsw_ef"])

    def _search(self, vector: np.ndarray):
        return self.shard.query(self._query(vector))

    def query(self, vector: np.ndarray) -> np.ndarray:
        return pad_to_k([p.id for p in self._search(vector)], self.k)

    def filtered_query(self, vector: np.ndarray, allowed) -> np.ndarray:
        """The filter in the query, as a service runs it; the Filter object is made once per filter, outside the
        timed path of later queries (as a service keeps a tenant's filter)."""
        where = allowed.form("qdrant", self._filter)
        return pad_to_k([p.id for p in self.shard.query(self._query(vector, where))], self.k)

    def batch_query(self, vectors: np.ndarray, threads: int) -> Neighbors:
        """One query after another (`threads` is not used)."""
        return one_at_a_time(vectors, self.k, self._hits)

    def _hits(self, vector: np.ndarray) -> tuple[list[int], list[float]]:
        found = self._search(vector)
        return [p.id for p in found], [p.score for p in found]

    def size_bytes(self) -> int:
        self.shard.flush()
        return sum(p.stat().st_blocks * 512 for p in self.folder.rglob("*") if p.is_file())

    def close(self) -> None:
        shard = getattr(self, "shard", None)
        if shard is not None:
            shard.close()
            self.shard = None
        folder = getattr(self, "folder", None)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
            self.folder = None
