"""What a pipeline is: stage kinds as descriptions of results rows (bench.pipeline.stages), pipeline ids and names
(bench.pipeline.ids), and the sweep config that names the pipelines to measure (bench.pipeline.config). May import
the layers before it (core, data, models, search).
"""
