"""Running a sweep: its cells (plan), what they will cost (estimate), models resolved and trained (prepare), each cell
measured (measure) on an executor, the sweep itself with resume (sweep), adaptive rerank depths, and the re-check of
a decision on a new host. May import every layer before it; never analysis or render (recheck decides through
bench.analysis, the one exception, as the CLI would).
"""
