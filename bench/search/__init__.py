"""What searches: the ANN and BM25 backends (one module per backend, bench.search.indexes), fusion rules, the hybrid
index fusing a dense and a BM25 side, and the MIPS reduction. May import bench.core, bench.data and bench.models.
"""
