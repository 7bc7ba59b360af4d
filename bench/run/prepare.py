"""Before measuring: the sweep's queries (test, dev, training), each encoder resolved to its model (trained ones
trained, once, cached), the rerankers loaded or trained, the hybrids' weights chosen on dev."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.pipeline.config import EncoderSpec, SweepConfig, tower_config
from bench.data.datasets import Dataset
from bench.models.encoders import (
    ENGINES, Encoder, HybridEncoder, SentenceEncoder, embed_dataset, model_identity, precision_suffix, resolve_model,
)
from bench.search.fusion import rule_of
from bench.search.hybrid import ChosenWeights, choose_weights
from bench.search.indexes import ParamError
from bench.core.env import cpu_count
from bench.models.rerankers import CrossEncoderScorer, ScoreCache, time_rerank
from bench.data.splits import QuerySplits, load_splits, restrict
from bench.pipeline.stages import kind_of
from bench.run.hooks import make_encoder
from bench.core.timing import LatencyStats
from bench.models.train.cross import model_dir as cross_model_dir, read_training, train_cross_encoder
from bench.models.train.options import CrossTrainConfig, TowerTrainConfig
from bench.models.train.towers import model_dir as tower_model_dir, train_towers
from bench.run.estimate import encode_rate_key, reranker_network, score_rate_key

log = logging.getLogger(__name__)


def sweep_splits(config: SweepConfig, data_root: Path | None = None, dataset: str | None = None,
                 distracted: bool = True) -> QuerySplits:
    """The protocol's test, dev and training queries of `dataset` (default: the sweep's); `max_queries` caps
    the test and the dev queries of the sweep's own dataset. `distracted=False`: without the config's distractors,
    the splits a model is trained on (a model trained for the collection is the same model, under the same
    identity, whether or not distractors are added to what it serves)."""
    name = dataset or config.dataset
    synthetic = config.synthetic if name == config.dataset else {}
    splits = load_splits(name, data_root, config.protocol, **synthetic)
    if config.distractors and distracted and name == config.dataset:  # the evaluation corpus grows; training data does not
        from bench.data.distractors import DistractorSpec, draw, with_distractors

        spec = DistractorSpec(**config.distractors)
        ids, texts = draw(spec, data_root)
        splits = dataclasses.replace(splits, test=with_distractors(splits.test, ids, texts, spec),
                                     dev=with_distractors(splits.dev, ids, texts, spec) if splits.dev else None)
    if not config.max_queries or name != config.dataset:
        return splits
    cap = config.max_queries
    return dataclasses.replace(splits, test=restrict(splits.test, splits.test.query_ids[:cap], splits.test.split),
                               dev=restrict(splits.dev, splits.dev.query_ids[:cap], "dev") if splits.dev else None)


@dataclass(frozen=True)
class ResolvedEncoder:
    """Where an encoder spec's model lives and what identifies it (before any training happens)."""

    spec: EncoderSpec
    model: str  # a name or path; for encoders trained by the harness, their cache folder
    identity: str
    tower: TowerTrainConfig | None = None  # set when the harness trains it ...
    splits: QuerySplits | None = None  # ... on these splits' training queries
    dense: "ResolvedEncoder | None" = None  # a hybrid's dense side

    @property
    def saw_eval_docs(self) -> bool:
        """Trained on queries judging documents that dev/test queries judge relevant (guard off or not applied)."""
        if self.dense is not None:
            return self.dense.saw_eval_docs
        return self.splits is not None and self.splits.guard.saw_eval_docs

    @property
    def network(self) -> str:
        """What sets its document encoding speed: the model, or for a tower the harness trains, its backbone (the
        same network size)."""
        return self.tower.backbone if self.tower is not None else self.model

    def encode_rate_key(self) -> str:
        spec = self.spec
        return encode_rate_key(self.network, spec.max_seq_length, spec.doc_precision, spec.doc_runtime)

    def load(self) -> Encoder:
        """The encoder (a trained one after `prepare_models` trained it)."""
        if self.dense is not None:
            return HybridEncoder(self.dense.load())
        if self.tower is not None:
            return SentenceEncoder(self.model, self.spec.max_seq_length, normalize=self.tower.normalize)
        return make_encoder(self.spec.type, self.model, self.spec.max_seq_length, **self.spec.network_settings())


def resolve_encoder(spec: EncoderSpec, config: SweepConfig, data_root: Path | None = None) -> ResolvedEncoder:
    if kind_of(spec.type).output == "text":
        return ResolvedEncoder(spec, spec.model, spec.type)
    side = kind_of(spec.type).made_of(spec)  # a fusion: identified by its dense side (its cell key holds the rest)
    if side is not None:
        dense = resolve_encoder(next(e for e in config.encoders if e.name == side), config, data_root)
        return ResolvedEncoder(spec, dense.model, dense.identity, dense=dense)
    if not spec.train:  # identified by what its corpus vectors depend on
        check_available(spec.model, f"encoder '{spec.name}'")
        return ResolvedEncoder(spec, spec.model, model_identity(spec.model) + ("" if spec.normalize else "|unnormalized")
                               + precision_suffix(spec.doc_precision, spec.device))
    tower = tower_config(spec, config.dataset)
    splits = sweep_splits(config, data_root, tower.dataset, distracted=False)
    if splits.train is None:
        raise ParamError(f"encoder '{spec.name}': dataset '{tower.dataset}' has no train queries to train on")
    folder = tower_model_dir(tower, splits)
    return ResolvedEncoder(spec, str(folder), f"trained:{folder.name}", tower, splits)


def check_available(model: str, who: str) -> None:
    """Offline (HF_HUB_OFFLINE), a model that is neither a local folder nor in the Hugging Face cache is an error now,
    before any work, instead of a download traceback when it is loaded."""
    import os


    if model in ENGINES or Path(resolve_model(model)).is_dir() or os.environ.get("HF_HUB_OFFLINE", "") in ("", "0"):
        return
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(model, "config.json"), str):
        from bench.models.fetch import PARTED

        hint = f"; fetch it first: python -m bench fetch-model {model}" if model in PARTED else ""
        raise ParamError(f"{who}: model '{model}' is neither a local folder nor in the Hugging Face cache, and the hub "
                         f"is offline (HF_HUB_OFFLINE=1){hint}")


def check_rerank(config: SweepConfig, data_root: Path | None) -> None:
    """Before anything is measured: R values that no reranked K admits, and trained rerankers whose dataset
    has no train or dev queries, are errors."""
    spec = config.rerank
    if not spec.rerankers:
        return
    ks = [k for k in config.k if not spec.k or k in spec.k]
    too_deep = [r for r in spec.r if not any(r <= k for k in ks)]
    if not ks or too_deep:
        raise ParamError(f"rerank.r: R {too_deep or spec.r} exceeds every reranked K {ks} (R <= K is needed)")
    for reranker in spec.rerankers:
        if reranker.train:
            name = reranker.train.get("dataset", config.dataset)
            splits = sweep_splits(config, data_root, name, distracted=False)
            if splits.train is None or splits.dev is None:
                raise ParamError(f"rerank.rerankers '{reranker.name}': dataset '{name}' has no "
                                 f"{'train' if splits.train is None else 'dev'} queries to train the model on "
                                 "(give `model = ...` instead, or train on another dataset)")


def prepare_models(resolved: dict[str, ResolvedEncoder], todo: dict[str, list], rerankers: "Rerankers",
                   data_root: Path | None, splits: QuerySplits,
                   timed_only: frozenset[str] = frozenset()) -> dict[str, dict[int, float]]:
    """Train (once, cached) every model that pending cells need, and choose the hybrids' fusion weights on the
    dev queries, before any cell is measured: no measurement waits on training, and executors never race to
    train the same model. A reranker whose pending children are all only re-timed (`timed_only`) is not trained
    when the rerankers time with a stand-in (`Rerankers.stand_in`). Returns the dev-chosen fusion weight per hybrid
    encoder and depth."""
    for name, cells in todo.items():
        for model in (resolved[name], resolved[name].dense):
            if cells and model is not None and model.tower is not None:
                train_towers(model.tower, data_root, splits=model.splits)
    children = [ch for cells in todo.values() for c in cells for ch in c.children]
    for reranker in dict.fromkeys(ch.reranker for ch in children):
        scored = [ch for ch in children if ch.reranker == reranker and ch.cell_id not in timed_only]
        if scored or not rerankers.stand_in:
            rerankers.get(reranker)
    return {name: hybrid_weights(resolved[name], splits) for name, cells in todo.items()
            if cells and resolved[name].dense is not None}


def hybrid_weights(encoder: ResolvedEncoder, splits: QuerySplits) -> dict[int, float]:
    """A hybrid's fusion weight per depth, chosen on the dev queries (the test queries where there are none)."""
    spec = encoder.spec.hybrid_spec
    if not rule_of(spec.fusion).weighted() or spec.weight != "dev":
        return {}
    embeddings = embed_dataset(encoder.load(), splits.evaluation, encoder.spec.batch_size)
    n_test = len(splits.test.query_ids)
    dev, queries = ((splits.dev, embeddings.queries[n_test:]) if splits.dev is not None
                    else (splits.test, embeddings.queries[:n_test]))
    chosen = choose_weights(spec, embeddings.docs, queries, dev, cpu_count())
    if splits.dev is None:
        log.warning("%s: weight = \"dev\" but the dataset has no dev queries: chosen on its %d test queries %s, and "
                    "marked \"chosen on test\" in every output", encoder.spec.name, len(dev.query_ids), chosen)
        return ChosenWeights(chosen, "test", not embeddings.cached)
    log.info("%s: fusion weights chosen on %d dev queries: %s", encoder.spec.name, len(dev.query_ids), chosen)
    return ChosenWeights(chosen, "dev", not embeddings.cached)


class Rerankers:
    """The configured cross-encoders, loaded (and trained, once, if asked) on first use."""

    def __init__(self, config: SweepConfig, data_root: Path | None, stand_in: bool = False):
        """`stand_in`: a reranker the harness trains that is not trained on this host yet is *timed* with its
        untrained backbone at the spec's max_length, precision and runtime (the same computation per pair; only the
        weights differ: benchmarks/rerank_weights_latency.py) instead of being trained first; scoring pairs always
        takes the trained model. `python -m bench recheck` times stored rows this way."""
        self.specs = {r.name: r for r in config.rerank.rerankers}
        self.config, self.data_root, self.stand_in = config, data_root, stand_in
        self._stand_ins: dict[str, CrossEncoderScorer] = {}
        self._scorers: dict[str, tuple[CrossEncoderScorer, dict]] = {}
        self._cache: ScoreCache | None = None
        self._latency: dict[tuple[str, int], LatencyStats] = {}
        self._training: dict[str, tuple[CrossTrainConfig, QuerySplits, Path] | None] = {}
        self.timing_seconds = 0.0  # spent timing rerank stages (once per reranker and R: not a per-cell cost)

    @property
    def cache(self) -> ScoreCache:
        self._cache = self._cache or ScoreCache()
        return self._cache

    def training(self, name: str) -> tuple[CrossTrainConfig, QuerySplits, Path] | None:
        """For a reranker the harness trains: its settings, the splits it trains on and its model folder (which
        exists once trained); None for a given model."""
        if name not in self._training:
            self._training[name] = self._trained(name)
        return self._training[name]

    def _trained(self, name: str) -> tuple[CrossTrainConfig, QuerySplits, Path] | None:
        spec = self.specs[name]
        if not spec.train:
            return None
        options = {"dataset": self.config.dataset, **spec.train}
        try:
            train_config = CrossTrainConfig(**options)
        except (TypeError, ValueError) as err:
            raise ParamError(f"reranker '{name}': train options {options}: {err}") from None
        splits = sweep_splits(self.config, self.data_root, train_config.dataset, distracted=False)
        return train_config, splits, cross_model_dir(train_config, splits)

    def rate_key(self, name: str) -> str:
        """The speeds.json key of this reranker variant's scoring rate (bench.run.estimate.score_rate_key)."""
        spec = self.specs[name]
        return score_rate_key(reranker_network(spec, self), spec.max_length, spec.precision, spec.runtime)

    def get(self, name: str) -> tuple[CrossEncoderScorer, dict]:
        """(scorer, training report; empty for models not trained by the harness)."""
        if name not in self._scorers:
            spec = self.specs[name]
            model, report = spec.model, {}
            trained = self.training(name)
            if trained is not None:
                train_config, splits, _ = trained
                model = str(train_cross_encoder(train_config, data_root=self.data_root, splits=splits))
                report = read_training(model)
            self._scorers[name] = (CrossEncoderScorer(model, spec.max_length, spec.batch_size,
                                                      precision=spec.precision, runtime=spec.runtime), report)
        return self._scorers[name]

    def timing_scorer(self, name: str) -> CrossEncoderScorer:
        """What times this reranker's stage: its model where it is loaded or trained here, else (with `stand_in`) its
        backbone at the same max_length, precision and runtime (the row's `rerank_timed_identity` names it)."""
        trained = self.training(name)
        if (name in self._scorers or not self.stand_in or trained is None
                or (trained[2] / "training.json").exists()):
            return self.get(name)[0]
        if name not in self._stand_ins:
            import transformers

            spec = self.specs[name]
            transformers.logging.set_verbosity_error()  # the backbone's new head is the point here, not news
            self._stand_ins[name] = CrossEncoderScorer(trained[0].backbone, spec.max_length, spec.batch_size,
                                                       precision=spec.precision, runtime=spec.runtime)
        return self._stand_ins[name]

    def max_length(self, name: str) -> int:
        return self.specs[name].max_length

    def loaded(self) -> list[tuple[str, dict]]:
        """(name, training report) of every reranker loaded so far."""
        return [(name, report) for name, (_, report) in self._scorers.items()]

    def latency(self, name: str, r: int, dataset: Dataset, top: np.ndarray, sample: list[int],
                threads: int) -> LatencyStats:
        """Per-query time to score R pairs uncached, over the `sample` queries' lists in `top`; timed once per run
        and reranker and R, on the first encoder's exact top-R that asks. Not per cell: 50 queries x R pairs
        cost ~R seconds here, and a pair's cost is set by its token count, which `max_length` caps (SciFact
        abstracts mostly exceed it), not by which candidates a cell found."""
        if (name, r) not in self._latency:
            scorer = self.timing_scorer(name)
            started = time.perf_counter()
            self._latency[(name, r)] = LatencyStats.from_ms(time_rerank(scorer, dataset, top, r, sample, threads))
            self.timing_seconds += time.perf_counter() - started
        return self._latency[(name, r)]
