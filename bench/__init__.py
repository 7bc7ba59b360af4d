"""Quality / latency / memory benchmarks of dense retrieval stacks."""
