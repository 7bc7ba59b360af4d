"""What turns text into vectors and scores: encoders (bi-encoders, twin towers, their precisions and runtimes), the
cross-encoder rerankers, the models' fetching from the registry wheels, and the training of towers and cross-encoders.
May import bench.core and bench.data.
"""
