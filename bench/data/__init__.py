"""The data, first in the pipeline's order: BEIR datasets, query splits (train / dev / test with the overlap guard),
chunking into passages, distractor corpora, real vector sets, and the quality metrics of a ranking against the qrels.
May import bench.core.
"""
