"""The evaluation protocol: which queries train, which choose settings (dev), which are reported (test).

- dev: the dataset's own `qrels/dev.tsv` when it has one; otherwise a seeded share of the train queries,
  never trained on. A dataset with neither has no dev queries: choices and reported numbers then use the
  same (test) queries, and every report says so.
- the leakage guard: a train query whose relevant document is also relevant to a dev or test query teaches
  a model that document, not the task. Before training, such queries are dropped; where that would leave
  less than `min_guarded_share` of the train queries (NFCorpus judges the same documents across splits),
  the models train on all of them and are marked as having seen the evaluation documents.
- "seen" queries: dev/test queries with a relevant document that is a positive of the (unguarded) train
  pool. The report splits every trained model's quality by it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from bench.data.datasets import Dataset, DatasetError, SplitMissing, _hash_strings, load_dataset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Protocol:
    """How queries are split and guarded (a sweep config's `[protocol]` section)."""

    dev_fraction: float = 0.25  # share of the train queries held out as dev when the dataset has no dev qrels
    seed: int = 0
    guard: bool = True  # drop train queries sharing a relevant document with a dev or test query
    min_guarded_share: float = 0.2  # the guard keeps at least this share of train queries, else it is not applied
    test_split: str = "test"
    # a dataset with test queries only (XQuAD): a TSV (doc id, group; a header line) under the data dir; each query
    # goes with the group of its relevant document, a seeded `dev_fraction` of the groups is dev and `train_fraction`
    # train, the rest test: no group (article) in two splits
    groups: str = ""
    train_fraction: float = 0.0

    def __post_init__(self):
        if not 0 < self.dev_fraction < 1:
            raise ValueError(f"dev_fraction must be in (0, 1), got {self.dev_fraction!r}")
        if not 0 <= self.min_guarded_share <= 1:
            raise ValueError(f"min_guarded_share must be in [0, 1], got {self.min_guarded_share!r}")
        if not isinstance(self.guard, bool):
            raise ValueError(f"guard must be true or false, got {self.guard!r}")
        if not 0 <= self.train_fraction < 1 or (self.groups and self.dev_fraction + self.train_fraction >= 1):
            raise ValueError(f"train_fraction must be in [0, 1) and leave test queries beside dev_fraction, got "
                             f"{self.train_fraction!r}")
        if self.train_fraction and not self.groups:
            raise ValueError("train_fraction applies to a split by groups (set groups)")


def positives(dataset: Dataset) -> dict[str, set[str]]:
    """Each query's relevant (grade > 0) document ids."""
    return {q: {d for d, g in dataset.qrels[q].items() if g > 0} for q in dataset.query_ids}


def judged_documents(test: Dataset, dev: Dataset | None) -> set[str]:
    """Documents a test or dev query judges relevant: what training must not see under the guard."""
    return {d for ds in (test, dev) if ds is not None for docs in positives(ds).values() for d in docs}


def restrict(dataset: Dataset, query_ids: list[str], split: str) -> Dataset:
    """The same corpus with only `query_ids` (in that order), named `split`; its hash follows the ids."""
    texts = dict(zip(dataset.query_ids, dataset.query_texts))
    ids = [q for q in query_ids if q in texts]
    return dataclasses.replace(dataset, split=split, query_ids=ids, query_texts=[texts[q] for q in ids],
                               qrels={q: dataset.qrels[q] for q in ids},
                               content_hash=_hash_strings([dataset.content_hash, split, *ids]))


def merge_queries(first: Dataset, second: Dataset) -> Dataset:
    """One dataset with the queries of both (same corpus), `first`'s queries first."""
    assert first.corpus_hash == second.corpus_hash
    return dataclasses.replace(first, query_ids=first.query_ids + second.query_ids,
                               query_texts=first.query_texts + second.query_texts,
                               qrels={**first.qrels, **second.qrels},
                               content_hash=_hash_strings([first.content_hash, second.content_hash]))


@dataclass(frozen=True)
class Guard:
    """What the splits share, and what the guard did about it."""

    train_pool: int  # train queries before the guard (dev queries taken out)
    kept: int  # train queries trained on
    dropped: int  # dropped by the guard (0 when it is off or not applied)
    applied: bool  # False: off in the config, or it would have kept too little (see `reason`)
    reason: str
    dev_seen_share: float  # dev queries with a relevant document that is a train-pool positive
    test_seen_share: float
    train_pairs_on_eval_docs: float  # share of train-pool (query, positive) pairs on a dev/test relevant doc
    seen_query_ids: tuple[str, ...] = ()  # dev and test queries with a train-pool positive

    @property
    def saw_eval_docs(self) -> bool:
        """Whether models trained under this protocol saw relevant documents of dev/test queries as positives."""
        return not self.applied and self.train_pairs_on_eval_docs > 0


@dataclass(frozen=True)
class QuerySplits:
    """The test queries, the dev queries (or None) and the queries models train on (or None), of one corpus."""

    test: Dataset
    dev: Dataset | None
    train: Dataset | None
    dev_source: str  # "qrels dev", "25% of train (seed 0)", or "none: choices use the test queries"
    guard: Guard | None  # None when there is no train split
    protocol: Protocol = field(default_factory=Protocol)

    @property
    def evaluation(self) -> Dataset:
        """Test queries then dev queries, one dataset: every cell is evaluated on both in one pass."""
        return self.test if self.dev is None else merge_queries(self.test, self.dev)

    def summary(self) -> dict:
        """What the results rows record of the protocol (JSON-able)."""
        guard = dataclasses.asdict(self.guard) if self.guard else None
        if guard:
            guard["seen_query_ids"] = sorted(guard["seen_query_ids"])
        return {"dev_source": self.dev_source, "n_test": len(self.test.query_ids),
                "n_dev": len(self.dev.query_ids) if self.dev else 0,
                "protocol": dataclasses.asdict(self.protocol), "guard": guard}


def _try_load(name: str, split: str, root: Path | None, synthetic: dict) -> Dataset | None:
    """The split, or None where the dataset has no (positive) judgments for it."""
    try:
        return load_dataset(name, split, root=root, **synthetic)
    except SplitMissing:
        return None


def split_by_groups(test: Dataset, groups_file: Path, protocol: Protocol) -> tuple[Dataset, Dataset, Dataset | None, str]:
    """(test, dev, train or None, how dev was made): the queries of a test-only dataset split by the group of their
    relevant document (`protocol.groups`), a seeded share of the groups for dev and for train."""
    if not groups_file.is_file():
        raise DatasetError(f"[protocol] groups: {groups_file} is not a file")
    lines = groups_file.read_text(encoding="utf-8").splitlines()[1:]
    group_of = dict(line.split("\t")[:2] for line in lines if line.strip())
    query_group = {}
    for query, docs in positives(test).items():
        known = sorted(group_of[d] for d in docs if d in group_of)
        if not known:
            raise DatasetError(f"[protocol] groups: {groups_file} has no group for the relevant documents of query "
                               f"'{query}' of {test.name}")
        query_group[query] = known[0]
    names = sorted(set(query_group.values()))
    order = np.random.default_rng(protocol.seed).permutation(len(names))
    n_dev, n_train = round(protocol.dev_fraction * len(names)), round(protocol.train_fraction * len(names))
    dev_groups = {names[i] for i in order[:n_dev]}
    train_groups = {names[i] for i in order[n_dev:n_dev + n_train]}

    def of(groups: set[str]) -> list[str]:
        return [q for q in test.query_ids if query_group.get(q) in groups]

    rest = set(names) - dev_groups - train_groups
    source = (f"{n_dev} of {len(names)} groups of {groups_file.name} (seed {protocol.seed})"
              + (f"; train: {n_train} others" if n_train else ""))
    return (restrict(test, of(rest), test.split), restrict(test, of(dev_groups), "dev"),
            restrict(test, of(train_groups), "train") if n_train else None, source)


def make_splits(test: Dataset, dev: Dataset | None, train: Dataset | None, protocol: Protocol,
                dev_source: str = "qrels dev") -> QuerySplits:
    """Dev from the dataset's own dev split or carved out of train (seeded), then the leakage guard."""
    test_ids = set(test.query_ids)
    if dev is not None:
        dev = restrict(dev, [q for q in dev.query_ids if q not in test_ids], "dev")
        source = dev_source
    if train is not None:
        pool = [q for q in train.query_ids if q not in test_ids]
        if dev is None:
            order = np.random.default_rng(protocol.seed).permutation(len(pool))
            n_dev = int(round(protocol.dev_fraction * len(pool)))
            dev_ids = {pool[i] for i in order[:n_dev]}
            dev = restrict(train, [q for q in pool if q in dev_ids], "dev")
            source = f"{protocol.dev_fraction:.0%} of train (seed {protocol.seed})"
        dev_ids = set(dev.query_ids)
        pool = [q for q in pool if q not in dev_ids]
    if dev is not None and not dev.query_ids:
        dev = None
    if dev is None:
        source = "none: choices use the test queries"
    if train is None or not pool:
        return QuerySplits(test, dev, None, source, None, protocol)
    guarded, guard = _guard(train, pool, test, dev, protocol)
    return QuerySplits(test, dev, guarded, source, guard, protocol)


def _guard(train: Dataset, pool: list[str], test: Dataset, dev: Dataset | None,
           protocol: Protocol) -> tuple[Dataset, Guard]:
    in_pool = set(pool)
    train_pos = {q: p for q, p in positives(train).items() if q in in_pool}
    eval_docs = judged_documents(test, dev)
    pool_docs = {d for docs in train_pos.values() for d in docs}
    leaking = [q for q in pool if train_pos[q] & eval_docs]
    pairs = sum(len(p) for p in train_pos.values())

    def seen(ds: Dataset) -> list[str]:
        return [q for q, docs in positives(ds).items() if docs & pool_docs]

    leaking_ids = set(leaking)
    kept = [q for q in pool if q not in leaking_ids]
    enough = len(kept) >= protocol.min_guarded_share * len(pool)
    applied = protocol.guard and enough and bool(kept)
    if not protocol.guard:
        reason = "off in the config"
    elif not applied:
        reason = (f"not applied: it would keep {len(kept)} of {len(pool)} train queries, under the "
                  f"{protocol.min_guarded_share:.0%} minimum; models train on documents the dev/test queries judge")
    else:
        reason = f"dropped {len(leaking)} of {len(pool)} train queries sharing a relevant document with dev/test"
    seen_ids = tuple(seen(test) + (seen(dev) if dev is not None else []))
    guard = Guard(
        train_pool=len(pool), kept=len(kept) if applied else len(pool), dropped=len(leaking) if applied else 0,
        applied=applied, reason=reason,
        dev_seen_share=len(seen(dev)) / len(dev.query_ids) if dev is not None else 0.0,
        test_seen_share=len(seen(test)) / len(test.query_ids),
        train_pairs_on_eval_docs=sum(len(p & eval_docs) for p in train_pos.values()) / max(pairs, 1),
        seen_query_ids=seen_ids)
    log.info("leakage guard on %s: %s", train.name, reason)
    return restrict(train, kept if applied else pool, "train"), guard


@lru_cache(maxsize=8)
def _cached_splits(name: str, root: Path | None, protocol: Protocol, synthetic: tuple) -> QuerySplits:
    options = dict(synthetic)
    test = load_dataset(name, protocol.test_split, root=root, **options)
    dev, train = _try_load(name, "dev", root, options), _try_load(name, "train", root, options)
    if protocol.groups:
        from bench.data.datasets import data_dir

        if dev is not None or train is not None:
            raise DatasetError(f"[protocol] groups splits a dataset with test queries only; {name} has its own dev or "
                               "train queries")
        test, dev, train, source = split_by_groups(test, (root or data_dir()) / protocol.groups, protocol)
        return make_splits(test, dev, train, protocol, source)
    return make_splits(test, dev, train, protocol)


def load_splits(name: str, root: Path | None = None, protocol: Protocol = Protocol(), **synthetic) -> QuerySplits:
    """The protocol's splits of dataset `name` (read once per process)."""
    return _cached_splits(name, Path(root) if root else None, protocol, tuple(sorted(synthetic.items())))


def training_splits(dataset: str, data_root: Path | None, protocol: Protocol, splits: QuerySplits | None,
                    needs_dev: bool = False) -> QuerySplits:
    """The splits a trainer uses: given, or the protocol's for `dataset`; train (and dev) queries required."""
    splits = splits or load_splits(dataset, data_root, protocol)
    if splits.train is None:
        raise DatasetError(f"dataset '{dataset}' has no train queries to train on (qrels/train.tsv)")
    if needs_dev and splits.dev is None:
        raise DatasetError(f"dataset '{dataset}' has no dev queries to calibrate on")
    return splits


def describe(splits: QuerySplits) -> str:
    """The protocol as the results rows' `protocol` column holds it."""
    return json.dumps(splits.summary(), sort_keys=True)
