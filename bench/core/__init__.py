"""Host and disk facts every layer reads: the content-keyed cache, this host's identity and instruction set (and the
rule that says which figures depend on it), the timing primitives and calibration kernel, and how a figure is written
with the precision its spread supports. Imports nothing else of bench.
"""
