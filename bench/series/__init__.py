"""Experiment series built on the run: scale, throughput under load, filtered search, composed pipelines, vector
norms, the latency gates and query-encode latency. May import every layer before it.
"""
