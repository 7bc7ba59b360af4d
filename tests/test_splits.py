"""The protocol: dev queries, the leakage guard, and what the splits share."""

import json

import pytest

from bench.data.datasets import load_dataset
from bench.data.splits import Protocol, load_splits, positives


def write_beir(root, qrels: dict[str, dict[str, str]]):
    """A BEIR folder: documents d0..d19, and per split {query id: relevant doc id}."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "text": f"doc {i}"}) + "\n"
                                               for i in range(20)))
    queries = {q for split in qrels.values() for q in split}
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": f"query {q}"}) + "\n"
                                                for q in sorted(queries)))
    (root / "qrels").mkdir(exist_ok=True)
    for split, judged in qrels.items():
        (root / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in judged.items()))
    return root


TEST = {"t1": "d1", "t2": "d2"}
TRAIN = {f"r{i}": f"d{i}" for i in range(1, 13)}  # r1, r2 judge the test queries' documents


def test_dev_is_carved_out_of_train_and_the_guard_drops_shared_documents(tmp_path):
    root = write_beir(tmp_path / "ds", {"test": TEST, "train": TRAIN})
    splits = load_splits(str(root), protocol=Protocol(dev_fraction=0.25, seed=0))
    assert splits.dev_source == "25% of train (seed 0)" and len(splits.dev.query_ids) == 3
    assert not set(splits.dev.query_ids) & set(splits.train.query_ids)
    assert not set(splits.dev.query_ids) & set(splits.test.query_ids)
    # under the guard no training query shares a relevant document with a dev or test query
    eval_docs = {d for ds in (splits.test, splits.dev) for docs in positives(ds).values() for d in docs}
    assert all(not docs & eval_docs for docs in positives(splits.train).values())
    guard = splits.guard
    dropped = {"r1", "r2"} - set(splits.dev.query_ids)
    assert guard.applied and guard.dropped == len(dropped) and guard.kept == 9 - len(dropped)
    assert guard.test_seen_share == pytest.approx(len(dropped) / 2) and not guard.saw_eval_docs
    # the evaluation set: test queries first, then dev
    assert splits.evaluation.query_ids == splits.test.query_ids + splits.dev.query_ids


def test_a_dataset_dev_split_is_used_as_is(tmp_path):
    root = write_beir(tmp_path / "ds", {"test": TEST, "train": TRAIN, "dev": {"v1": "d15"}})
    splits = load_splits(str(root))
    assert splits.dev_source == "qrels dev" and splits.dev.query_ids == ["v1"]
    assert len(splits.train.query_ids) == 10  # all 12 train queries but r1, r2


def test_guard_off_or_too_costly_trains_on_everything_and_says_so(tmp_path):
    # every train query judges a test document: the guard would leave nothing
    root = write_beir(tmp_path / "ds", {"test": {"t1": "d1"}, "train": {f"r{i}": "d1" for i in range(8)},
                                        "dev": {"v1": "d15"}})
    splits = load_splits(str(root))
    assert not splits.guard.applied and "not applied" in splits.guard.reason
    assert len(splits.train.query_ids) == 8 and splits.guard.saw_eval_docs
    off = load_splits(str(write_beir(tmp_path / "ds2", {"test": TEST, "train": TRAIN})), protocol=Protocol(guard=False))
    assert off.guard.reason == "off in the config" and off.guard.saw_eval_docs
    assert len(off.train.query_ids) == 9


def test_a_test_only_dataset_has_no_dev_queries(tmp_path):
    root = write_beir(tmp_path / "ds", {"test": TEST})
    splits = load_splits(str(root))
    assert splits.dev is None and splits.train is None and splits.dev_source.startswith("none")
    assert splits.evaluation.query_ids == load_dataset(str(root), "test").query_ids


def test_bad_protocol_options_fail_when_the_config_is_parsed():
    from bench.pipeline.config import ConfigError, parse_config

    base = {"name": "b", "dataset": "synthetic", "split": "test", "k": [5], "encoders": [{"name": "e"}],
            "backends": [{"backend": "exact"}]}
    assert parse_config(base, "c.toml").protocol == Protocol()
    for bad, message in [({"dev_fraction": 1.5}, ": dev_fraction must be in"),
                         ({"guard": "yes"}, ".guard: input should be a valid boolean"), ({"gaurd": False}, ": unknown key")]:
        with pytest.raises(ConfigError, match=f"c.toml: protocol{message}"):
            parse_config({**base, "protocol": bad}, "c.toml")
