import dataclasses

import numpy as np
import pytest
import torch

from bench.data.datasets import synthetic_dataset
from bench.search.indexes import Neighbors, ParamError
from bench.models.rerankers import CrossEncoderScorer, ScoreCache, cross_scores, rerank
from bench.models.train.cross import expected_calibration_error, platt_fit, ranking_loss
from bench.models.train.options import LOSSES


def first_stage():
    ids = np.array([[4, 2, 7, 1, 9], [3, 5, 0, -1, -1]])
    scores = np.array([[0.9, 0.8, 0.8, 0.5, 0.1], [0.7, 0.6, 0.2, np.nan, np.nan]], dtype=np.float32)
    return Neighbors(ids, scores)


def test_alpha_zero_reproduces_the_first_stage_exactly():
    first = first_stage()
    cross = [np.array([0.1, 5.0, -2.0, 3.0]), np.array([1.0, 9.0, 4.0, np.nan])]
    assert np.array_equal(rerank(first, 4, cross, alpha=0.0), first.ids)


def test_cross_only_reorders_the_top_r_and_keeps_the_rest():
    first = first_stage()
    cross = [np.array([0.1, 5.0, -2.0]), np.array([1.0, 9.0, 4.0])]
    out = rerank(first, 3, cross, alpha=1.0)
    assert out[0].tolist() == [2, 4, 7, 1, 9]
    assert out[1].tolist() == [5, 0, 3, -1, -1]


def test_r_above_k_and_bad_alpha_are_rejected():
    with pytest.raises(ParamError, match=r"R \(6\) must be <= K \(5\)"):
        rerank(first_stage(), 6, [np.zeros(6)] * 2)
    with pytest.raises(ParamError, match="alpha must be in"):
        rerank(first_stage(), 2, [np.zeros(2)] * 2, alpha=1.5)


def test_scores_are_cached_per_pair(tiny_cross_encoder, tmp_path):
    ds = synthetic_dataset(n_docs=30, n_queries=4)
    ids = np.tile(np.arange(10), (4, 1))
    scorer = CrossEncoderScorer(tiny_cross_encoder, max_length=32, batch_size=8)
    cache = ScoreCache(tmp_path / "s.sqlite")
    first, scored = cross_scores(scorer, cache, ds, ids, r=5)
    assert scored == 20
    more, scored_more = cross_scores(scorer, cache, ds, ids, r=8)
    assert scored_more == 12  # only ranks 6-8 are new
    again, scored_again = cross_scores(scorer, ScoreCache(tmp_path / "s.sqlite"), ds, ids, r=8)
    assert scored_again == 0
    np.testing.assert_allclose(np.stack(more)[:, :5], np.stack(first), rtol=1e-5)
    np.testing.assert_allclose(np.stack(again), np.stack(more))
    direct = scorer.score([ds.query_texts[0]], [ds.doc_texts[3]])
    assert again[0][3] == pytest.approx(float(direct[0]), rel=1e-5)


def test_reranker_variants_are_other_identities_scored_as_served(spread_cross_encoder, tmp_path):
    """int8 (torch dynamic quantization), ONNX Runtime fp32 and int8: each its own identity (cached apart), fp32
    scores equal to torch's, int8 scores keeping what quantization preserves on any instruction set (AVX2's u8s8
    kernels saturate where AVX-512 VNNI's do not): the order of scores well apart, within a share of the spread;
    every pair scored in a call holding only its own query's pairs."""
    from scipy.stats import spearmanr

    ds = synthetic_dataset(n_docs=30, n_queries=4)
    ids = np.tile(np.arange(8), (4, 1))
    reference = CrossEncoderScorer(spread_cross_encoder, max_length=32)
    cache = ScoreCache(tmp_path / "s.sqlite")
    base, _ = cross_scores(reference, cache, ds, ids, r=8)
    base = np.stack(base).ravel()
    spread = base.std()
    assert spread > 0.05  # the model's scores spread (a random tiny one at BERT's default init: 3e-5)
    variants = {(p, rt): CrossEncoderScorer(spread_cross_encoder, max_length=32, precision=p, runtime=rt)
                for p, rt in [("int8", "torch"), ("fp32", "onnxruntime"), ("int8", "onnxruntime")]}
    assert reference.identity.endswith("|max_length=32")  # the identity fp32 torch rows have always carried
    assert len({reference.identity, *(v.identity for v in variants.values())}) == 4
    apart = np.abs(base[:, None] - base[None, :]) > spread  # pairs of pairs whose fp32 scores differ by over one SD
    for (precision, runtime), scorer in variants.items():
        scores, scored = cross_scores(scorer, cache, ds, ids, r=8)
        assert scored == 32  # nothing reused from another identity
        scores = np.stack(scores).ravel()
        if precision == "fp32":
            np.testing.assert_allclose(scores, base, atol=1e-4)
            continue
        assert not np.array_equal(scores, base)  # quantized: another function
        assert np.abs(scores - base).mean() < 0.25 * spread, (runtime, np.abs(scores - base).mean(), spread)
        assert spearmanr(scores, base)[0] > 0.9, runtime
        same_order = np.sign(base[:, None] - base[None, :]) == np.sign(scores[:, None] - scores[None, :])
        assert same_order[apart].all(), runtime  # scores well apart keep their order
    # served one query per call: a query's scores do not depend on which other queries were scored with it
    int8 = variants[("int8", "torch")]
    alone, _ = cross_scores(int8, ScoreCache(tmp_path / "alone.sqlite"), ds, ids[:1], r=8)
    mixed, _ = cross_scores(int8, ScoreCache(tmp_path / "mixed.sqlite"), ds, ids, r=8)
    np.testing.assert_array_equal(alone[0], mixed[0])
    with pytest.raises(ParamError, match="precision must be one of"):
        CrossEncoderScorer(spread_cross_encoder, precision="int4")


@pytest.mark.parametrize("loss", LOSSES)
def test_each_loss_learns_a_toy_ranking(loss):
    """Lists of 4 items described by 3 features; the positive (column 0) has the largest first feature."""
    torch.manual_seed(0)
    features = torch.randn(64, 4, 3)
    features[:, 0, 0] = features[:, :, 0].max(dim=1).values + 1.0
    scorer = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(scorer.parameters(), lr=0.5)
    initial = ranking_loss(scorer(features).squeeze(-1), loss).item()
    for _ in range(100):
        value = ranking_loss(scorer(features).squeeze(-1), loss)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    logits = scorer(features).squeeze(-1)
    assert ranking_loss(logits, loss).item() < 0.5 * initial
    assert (logits.argmax(dim=1) == 0).float().mean() == 1.0


def test_listwise_loss_hand_value():
    logits = torch.tensor([[2.0, 0.0, 0.0]])
    expected = -np.log(np.exp(2) / (np.exp(2) + 2))
    assert float(ranking_loss(logits, "listwise")) == pytest.approx(expected, rel=1e-6)


def test_platt_scaling_reduces_calibration_error():
    rng = np.random.default_rng(0)
    labels = (rng.random(2000) < 0.3).astype(float)
    scores = 3.0 * labels + rng.standard_normal(2000) + 4.0  # sigmoid(scores) is overconfident
    before = expected_calibration_error(1 / (1 + np.exp(-scores)), labels)
    a, b = platt_fit(scores, labels)
    after = expected_calibration_error(1 / (1 + np.exp(-(a * scores + b))), labels)
    assert after < 0.05 < before


def test_cross_encoder_trains_on_guarded_queries_and_chooses_alpha_on_dev(tiny_model, tiny_cross_encoder):
    import json

    from bench.data.splits import load_splits
    from bench.models.train.cross import train_cross_encoder
    from bench.models.train.options import CrossTrainConfig

    splits = load_splits("synthetic", n_docs=120, n_queries=24, n_topics=4, seed=3)
    config = CrossTrainConfig(backbone=tiny_cross_encoder, first_stage=tiny_model, dataset="synthetic", negatives=3,
                              batch_queries=4, max_length=32, neg_rank_lo=1, neg_rank_hi=10, dev_r=5)
    folder = train_cross_encoder(config, splits=splits)
    report = json.loads((folder / "training.json").read_text())
    assert report["train_queries"] == 18 and report["dev_queries"] == 6 and not report["saw_eval_docs"]
    assert report["steps"] == 18 // 4 + 1 and report["alpha"] in [float(a) for a in report["dev_ndcg_at_10_by_alpha"]]
    assert train_cross_encoder(config, splits=splits) == folder  # cached


def test_titles_as_pseudo_queries_and_negatives_from_both_first_stages(tiny_model, tiny_cross_encoder):
    import json

    from bench.data.splits import load_splits, positives
    from bench.models.train.cross import title_queries, train_cross_encoder, training_examples
    from bench.models.train.options import CrossTrainConfig

    splits = load_splits("synthetic", n_docs=120, n_queries=24, n_topics=4, seed=3)
    titles = title_queries(splits, 30, seed=0)
    judged = {d for ds in (splits.test, splits.dev) for docs in positives(ds).values() for d in docs}
    assert len(titles.query_ids) == 30 and not {next(iter(titles.qrels[q])) for q in titles.query_ids} & judged
    row = {d: i for i, d in enumerate(splits.train.doc_ids)}
    assert all(text == splits.train.doc_titles[row[next(iter(titles.qrels[q]))]]
               for q, text in zip(titles.query_ids, titles.query_texts))
    config = CrossTrainConfig(backbone=tiny_cross_encoder, first_stage=tiny_model, dataset="synthetic", negatives=3,
                              batch_queries=4, max_length=32, neg_rank_lo=1, neg_rank_hi=10, dev_r=5,
                              mine_from="dense+bm25", title_queries=30)
    dense_only = training_examples(splits.train, dataclasses.replace(config, mine_from="dense"))
    both = training_examples(splits.train, config)
    # the pool is the union of both first stages' ranks 1-9, never a judged positive of the query
    assert all(set(d[2]) <= set(b[2]) for d, b in zip(dense_only, both)) and any(len(b[2]) > len(d[2])
                                                                               for d, b in zip(dense_only, both))
    assert all(p not in pool for _, p, pool in both)
    report = json.loads((train_cross_encoder(config, splits=splits) / "training.json").read_text())
    assert report["train_queries"] == 18 and report["title_queries"] == 30 and report["steps"] == (18 + 30 + 3) // 4


def _with_sentences(splits):
    """The synthetic splits with each document's words cut into sentences of 8 words."""
    from bench.data.datasets import _hash_strings

    texts = [". ".join(" ".join(words[i:i + 8]) for i in range(0, len(words), 8)) + "."
             for words in (t.split() for t in splits.train.doc_texts)]

    def redo(ds):
        return None if ds is None else dataclasses.replace(
            ds, doc_texts=texts, corpus_hash=_hash_strings([ds.corpus_hash, "sentences"]),
            content_hash=_hash_strings([ds.content_hash, "sentences"]))
    return dataclasses.replace(splits, train=redo(splits.train), dev=redo(splits.dev), test=redo(splits.test))


def test_sentences_as_pseudo_queries_ask_for_their_document_without_them():
    from bench.data.splits import load_splits, positives
    from bench.models.train.cross import sentence_queries

    splits = _with_sentences(load_splits("synthetic", n_docs=120, n_queries=24, n_topics=4, seed=3))
    queries, positive_text = sentence_queries(splits, 25, seed=0)
    judged = {d for ds in (splits.test, splits.dev) for docs in positives(ds).values() for d in docs}
    assert len(queries.query_ids) == 25 and set(positive_text) == set(queries.query_ids)
    row = {d: i for i, d in enumerate(splits.train.doc_ids)}
    for qid, sentence in zip(queries.query_ids, queries.query_texts):
        (doc,) = queries.qrels[qid]
        assert doc not in judged and len(sentence.split()) == 8
        full = splits.train.doc_texts[row[doc]]
        assert sentence in full and sentence not in positive_text[qid]
        assert len(positive_text[qid].split()) == len(full.split()) - 8
    assert sentence_queries(splits, 25, seed=0)[0].query_texts == queries.query_texts  # seeded


def test_distillation_loss_is_zero_when_the_student_agrees_with_the_teacher():
    import torch

    from bench.models.train.cross import distillation_loss

    cosines = torch.tensor([[0.9, 0.5, 0.1], [0.2, 0.8, 0.3]])
    assert distillation_loss(cosines / 0.05, cosines, 0.05).item() < 1e-6
    assert distillation_loss(-cosines / 0.05, cosines, 0.05).item() > 1.0


def test_distilled_training_with_sentences_resumes_where_it_stopped(tiny_model, tiny_cross_encoder, monkeypatch):
    import json

    import torch
    from safetensors.torch import load_file

    import bench.models.train.cross as train_cross
    from bench.data.splits import load_splits

    splits = _with_sentences(load_splits("synthetic", n_docs=120, n_queries=24, n_topics=4, seed=3))
    config = train_cross.CrossTrainConfig(
        backbone=tiny_cross_encoder, first_stage=tiny_model, dataset="synthetic", negatives=3, batch_queries=4,
        max_length=32, neg_rank_lo=1, neg_rank_hi=10, dev_r=5, sentence_queries=10, title_queries=6, distill=1.0)
    monkeypatch.setattr(train_cross, "CHECKPOINT_EVERY", 3)
    torch.set_num_threads(1)
    whole = train_cross.train_cross_encoder(config, splits=splits)
    report = json.loads((whole / "training.json").read_text())
    assert report["sentence_queries"] == 10 and report["title_queries"] == 6 and report["steps"] == (18 + 16 + 3) // 4
    assert not (whole.with_name(whole.name + ".partial") / "checkpoint.pt").exists()
    reference = load_file(whole / "model.safetensors")
    import shutil

    shutil.move(whole, whole.with_name("whole"))
    calls = 0
    real_loss = train_cross.ranking_loss

    def crash_on_the_eighth_step(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 8:
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(train_cross, "ranking_loss", crash_on_the_eighth_step)
    with pytest.raises(KeyboardInterrupt):
        train_cross.train_cross_encoder(config, splits=splits)
    assert torch.load(whole.with_name(whole.name + ".partial") / "checkpoint.pt", weights_only=False)["step"] == 6
    monkeypatch.setattr(train_cross, "ranking_loss", real_loss)
    resumed = train_cross.train_cross_encoder(config, splits=splits)
    assert json.loads((resumed / "training.json").read_text())["losses"] == report["losses"]
    weights = load_file(resumed / "model.safetensors")
    assert all(torch.allclose(weights[k], reference[k], atol=1e-6) for k in reference)


def test_reranker_variants_run_in_the_sweep_and_compare_with_the_reference(tiny_model, tiny_cross_encoder, tmp_path,
                                                                           capsys):
    from bench.analysis import with_derived
    from bench.analysis.rerankers import variant_table
    from bench.cli import main
    from bench.pipeline.config import RerankerSpec, RerankSpec, load_config
    from bench.run.plan import _reranker_key
    from bench.store.results import read_results
    from bench.run.sweep import run_sweep

    base = load_config("configs/tiny.toml")
    rerank = RerankSpec(rerankers=[RerankerSpec("ce", model=tiny_cross_encoder, max_length=32, alpha=[1.0, "dev"]),
                                   RerankerSpec("ce-int8", model=tiny_cross_encoder, max_length=32, precision="int8",
                                                alpha=[1.0, "dev"])],
                        r=[10], k=[20], latency_queries=4)
    sweep = dataclasses.replace(base, encoders=[dataclasses.replace(base.encoders[0], model=tiny_model)],
                                results=str(tmp_path / "v.parquet"), rerank=rerank,
                                backends=[b for b in base.backends if b.backend == "exact"])
    run_sweep(sweep)
    rows = read_results(sweep.results_path)
    reranked = rows[rows["stage"] == "rerank"]
    assert sorted(reranked["reranker_identity"].str.endswith("|int8")) == [False, False, True, True]
    # the added fields enter a cell id only away from their defaults: ids of rows before them are unchanged
    assert "precision" not in _reranker_key(rerank.rerankers[0]) and _reranker_key(rerank.rerankers[1])["precision"] == "int8"
    table = variant_table(with_derived(rows), "ce")
    # an alpha chosen on dev pairs with the reference's alpha chosen on dev, whichever value each chose
    assert sorted(table["alpha"].str.endswith("(dev)")) == [False, False, True, True]
    assert (table.loc[table["reranker"] == "ce", "dev delta"] == 0).all()
    table = table[table["alpha"] == "1"].set_index("reranker")
    assert table.loc["ce", "dev delta"] == 0 and table.loc["ce-int8", "precision"] == "int8"
    assert np.isfinite(table.loc["ce-int8", "pairs/s"]) and table.loc["ce-int8", "max_length"] == 32
    assert main(["reranker-variants", str(sweep.results_path), "--reference", "ce"]) == 0
    assert "ce-int8" in capsys.readouterr().out
    # the report's section: one line per variant (alpha 1, fixed R), and the picks before / after the variants join
    from bench.render.rerankers import rerank_variants_section
    text = rerank_variants_section(rows, "ce", rows[rows["stage"] == "first"])
    variant_lines = [line for line in text.splitlines() if line.startswith("| ce")]
    assert len(variant_lines) == 2 and "int8 len 32" in variant_lines[1]
    assert "| 100 ms / 500 MB |" in text and "| 300 ms / 500 MB |" in text
    assert main(["reranker-variants", str(sweep.results_path), "--reference", "nope"]) == 2
