"""Results on disk: the typed rows a measurement writes (bench.store.records) and the parquet store that survives
kills and concurrent writers (bench.store.results). May import the layers before it.
"""
