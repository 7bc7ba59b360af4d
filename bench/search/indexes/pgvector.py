"""PostgreSQL + pgvector, served over a unix socket (bench.search.services.postgres) and queried through its real
client (psycopg 3, binary vectors, a prepared statement, one query at a time on one connection, as a service would).

Two index types, as pgvector names them: `pgvector_hnsw` (build `m`, `ef_construction`; search `ef_search`, >= K,
default K; pgvector's range 1-1000) and `pgvector_ivfflat` (build `lists`; search `probes`, default 1). `fit` starts a
server, loads the vectors by binary COPY, builds the index (`threads` - 1 parallel maintenance workers), and runs
ANALYZE; `close` stops the server. Queries run `ORDER BY embedding <#> $1 LIMIT K` (negative inner product) with
sequential scans disabled, so the index answers as it would on a large table. Size: the index relation's bytes
(`pg_relation_size`); `cached_bytes`: its pages in shared buffers (pg_buffercache, 1 GB of shared buffers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.search.indexes.base import AnnIndex, Neighbors, Params, one_at_a_time, pad_to_k, require
from bench.search.indexes.hnsw import check_graph_build, ef_at_least
from bench.search.services.postgres import PostgresService

QUERY = "SELECT id, -(embedding <#> %s) FROM items ORDER BY embedding <#> %s LIMIT %s"
FILTERED = "SELECT id FROM items WHERE id = ANY(%s) ORDER BY embedding <#> %s LIMIT %s"
PAGE = 8192
PAGE_FREE = PAGE - 24 - 8  # after the page header and the special space


class PgvectorIndex(AnnIndex):
    """What both pgvector index types share: the server, the load, the client, the size."""

    method = ""  # USING hnsw / ivfflat
    size_method = "pg_relation_size"
    native_filter = "WHERE id = ANY($ids) with pgvector's iterative index scan (relaxed order)"
    search_setting = ""  # the session setting its search parameter sets

    def with_clause(self) -> str:
        raise NotImplementedError

    def _fit(self, vectors: np.ndarray, threads: int) -> None:
        from pgvector.psycopg import register_vector


        self.close()
        self.service = PostgresService({"shared_buffers": "1GB", "maintenance_work_mem": "2GB",
                                        "max_parallel_maintenance_workers": str(max(threads - 1, 0)),
                                        "max_parallel_workers": str(max(threads, 1)), "max_worker_processes": "8"})
        self.conn = self.service.connect()
        self.conn.execute("CREATE EXTENSION vector")
        self.conn.execute("CREATE EXTENSION pg_buffercache")
        register_vector(self.conn)
        self.conn.execute(f"CREATE TABLE items (id int4, embedding vector({vectors.shape[1]}))")
        with self.conn.cursor().copy("COPY items (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "vector"])
            for i, vector in enumerate(vectors):
                copy.write_row((i, vector))
        self.conn.execute(f"CREATE INDEX items_embedding ON items USING {self.method} (embedding vector_ip_ops) "
                          f"WITH ({self.with_clause()})")
        self.conn.execute("ANALYZE items")
        self.conn.execute("SET enable_seqscan = off")
        self.cursor = self.conn.cursor(binary=True)

    def _set_search(self, k, search) -> None:
        value = next(iter(search.values()))
        self.conn.execute(f"SET {self.search_setting} = {int(value)}")

    def _execute(self, sql: str, params) -> list:
        """One prepared query; a failure is checked against the server's state (a dead server named) outside the
        timed path of a successful query."""
        try:
            return self.cursor.execute(sql, params, prepare=True).fetchall()
        except Exception:
            self.service.check_running()
            raise

    def _search(self, vector: np.ndarray):
        return self._execute(QUERY, (vector, vector, self.k))

    def query(self, vector: np.ndarray) -> np.ndarray:
        return pad_to_k([row[0] for row in self._search(vector)], self.k)

    def filtered_query(self, vector: np.ndarray, allowed) -> np.ndarray:
        """The filter in SQL, as a service runs it: the index scan continues past filtered-out rows
        (`iterative_scan = relaxed_order`, pgvector 0.8) until K pass or its scan limit is reached."""
        if not getattr(self, "iterative", False):
            self.conn.execute(f"SET {self.method}.iterative_scan = relaxed_order")
            self.iterative = True
        return pad_to_k([row[0] for row in self._execute(FILTERED, (allowed.id_list, vector, self.k))], self.k)

    def batch_query(self, vectors: np.ndarray, threads: int) -> Neighbors:
        """One query after another on the one connection (`threads` is not used: a service's client per thread is
        what the load series measures)."""
        return one_at_a_time(vectors, self.k, self._hits)

    def _hits(self, vector: np.ndarray) -> tuple[list[int], list[float]]:
        rows = self._search(vector)
        return [r[0] for r in rows], [r[1] for r in rows]

    def size_bytes(self) -> int:
        return int(self.conn.execute("SELECT pg_relation_size('items_embedding')").fetchone()[0])

    def cached_bytes(self) -> int:
        return PAGE * int(self.conn.execute(
            "SELECT count(*) FROM pg_buffercache WHERE relfilenode = pg_relation_filenode('items_embedding') "
            "AND reldatabase = (SELECT oid FROM pg_database WHERE datname = current_database())").fetchone()[0])

    def close(self) -> None:
        service = getattr(self, "service", None)
        if service is not None:
            try:
                self.conn.close()
            finally:
                service.stop()
                self.service = None


@dataclass(frozen=True)
class PgHnswBuild(Params):
    m: int = 16
    ef_construction: int = 64


@dataclass(frozen=True)
class PgHnswSearch(Params):
    ef_search: int | None = None  # None: K


class PgvectorHNSW(PgvectorIndex):
    name = "pgvector_hnsw"
    method, search_setting = "hnsw", "hnsw.ef_search"
    Build = PgHnswBuild
    Search = PgHnswSearch
    gate_params = ({"m": 16, "ef_construction": 64}, {"ef_search": 50})

    def check_build(self, n: int) -> None:
        check_graph_build(self.name, self.build.m, self.build.ef_construction)
        require(2 <= self.build.m <= 100, f"{self.name}: m ({self.build.m}) must be between 2 and 100 (pgvector's range)")
        require(self.build.ef_construction >= 2 * self.build.m,
                f"{self.name}: ef_construction ({self.build.ef_construction}) must be >= 2 * m (pgvector's rule)")

    def with_clause(self) -> str:
        return f"m = {self.build.m}, ef_construction = {self.build.ef_construction}"

    def effective_search(self, k, search):
        ef = k if search.ef_search is None else search.ef_search
        require(k <= ef <= 1000, f"{self.name}: ef_search ({ef}) must be between K ({k}) and 1000 (pgvector's range; "
                                 "an HNSW scan returns at most ef_search rows)")
        return {"ef_search": ef}

    def search_at_least(self, k, search):
        return ef_at_least(k, search, "ef_search")

    def memory_bytes(self, n: int, dim: int) -> int:
        """pgvector's HNSW pages (src/hnsw.h, hnswbuild.c), laid out as the build writes them: per element an element
        tuple (type, level, deleted, version 4 + 10 heap TIDs 60 + neighbour TID 6 + 2 + the vector 8 + 4 * dim) and
        its neighbour tuple (4 + 6 bytes per neighbour: (level + 2) * m), each MAXALIGNed with a 4-byte line
        pointer, the two on one page or both on a new one (8,160 bytes free per 8 KB page), levels drawn as pgvector
        draws them (P(level >= l) = m^-l); beyond 20,000 elements the pages of 20,000 scaled; plus the metapage.
        Within 0.2% of the built index from 5,000 to 20,000 vectors of 16 to 384 dimensions."""
        m, sample = self.build.m, min(n, 20_000)
        levels = np.floor(-np.log(np.random.default_rng(0).random(sample)) / np.log(m)).astype(int)
        element = 8 * -(-(80 + 4 * dim) // 8) + 4
        pages, free = 1, PAGE_FREE
        for level in levels:
            pair = element + 8 * -(-(4 + 6 * (level + 2) * m) // 8) + 4
            if pair > free:
                pages, free = pages + 1, PAGE_FREE
            free -= pair
        return int(PAGE * (pages * n / sample + 1))


@dataclass(frozen=True)
class PgIvfBuild(Params):
    lists: int = 100


@dataclass(frozen=True)
class PgIvfSearch(Params):
    probes: int = 1


class PgvectorIVFFlat(PgvectorIndex):
    name = "pgvector_ivfflat"
    method, search_setting = "ivfflat", "ivfflat.probes"
    Build = PgIvfBuild
    Search = PgIvfSearch
    gate_params = ({"lists": 100}, {"probes": 10})
    # the built size itself moves with k-means' list sizes (1.8% between two builds of the same 8,000 vectors); the
    # model assumes half a page of slack per list: +0.4% to +7% on 5,000-20,000 vectors of 16-384 dimensions
    memory_model_error = 0.08

    def check_build(self, n: int) -> None:
        require(1 <= self.build.lists <= min(n, 32768),
                f"{self.name}: lists ({self.build.lists}) must be between 1 and min(the number of vectors, 32768)")

    def with_clause(self) -> str:
        return f"lists = {self.build.lists}"

    def effective_search(self, k, search):
        require(1 <= search.probes <= self.build.lists,
                f"{self.name}: probes ({search.probes}) must be between 1 and lists ({self.build.lists})")
        return {"probes": search.probes}

    def memory_bytes(self, n: int, dim: int) -> int:
        """pgvector's IVFFlat pages (src/ivfflat.h): list pages of index tuples (header 8 + the vector 8 + 4 * dim,
        MAXALIGNed, + a 4-byte line pointer; 8,160 bytes free per page), each list's last page half empty on average,
        the centers' pages (start and insert page 8 + the vector), a metapage."""
        item = 8 * -(-(8 + 8 + 4 * dim) // 8) + 4
        center = 8 * -(-(8 + 8 + 4 * dim) // 8) + 4
        lists = self.build.lists
        return int(PAGE * (n / (PAGE_FREE // item) + lists / 2 + -(-lists // (PAGE_FREE // center)) + 1))
