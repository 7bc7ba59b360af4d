"""What searches: the ANN and BM25 backends (one module per backend, bench.search.indexes; their names, inputs and
short names in bench.search.catalog, importable without any library), the servers a backend talks to over a socket
(bench.search.services), fusion rules, the hybrid index fusing a dense and a BM25 side, and the MIPS reduction.
May import bench.core and bench.data.
"""
