import json
import math

import numpy as np
import pytest
import torch

from bench.data.datasets import synthetic_dataset
from bench.data.splits import load_splits
from bench.models.encoders import SentenceEncoder, embed_dataset
from bench.models.train.options import TowerTrainConfig
from bench.models.train.towers import build_towers, distillation_loss, info_nce, train_towers


def test_info_nce_equals_hand_computed_3x3():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    d = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    tau = 0.5
    # scores q_i . d_j: row 0 [1, .6, 0], row 1 [0, .8, 1], row 2 [.6, 1, .8]; targets are the diagonal
    rows = [[1.0, 0.6, 0.0], [0.0, 0.8, 1.0], [0.6, 1.0, 0.8]]
    hand = np.mean([-(r[i] / tau) + math.log(sum(math.exp(s / tau) for s in r)) for i, r in enumerate(rows)])
    assert float(info_nce(q, d, tau)) == pytest.approx(hand, rel=1e-6)
    # masking a column removes it from the denominator only
    mask = torch.zeros(3, 3, dtype=torch.bool)
    mask[0, 1] = True
    masked_row0 = -(1.0 / tau) + math.log(math.exp(1.0 / tau) + math.exp(0.0))
    hand_masked = (masked_row0 + sum(-(r[i] / tau) + math.log(sum(math.exp(s / tau) for s in r))
                                     for i, r in list(enumerate(rows))[1:])) / 3
    assert float(info_nce(q, d, tau, mask)) == pytest.approx(hand_masked, rel=1e-6)


def test_distillation_is_zero_when_student_matches_teacher():
    teacher = torch.tensor([[3.0, 1.0, 0.0], [0.5, 2.0, -1.0]])
    assert float(distillation_loss(teacher.clone(), teacher, "kl")) == pytest.approx(0.0, abs=1e-7)
    assert float(distillation_loss(teacher + 5.0, teacher, "mse")) == pytest.approx(0.0, abs=1e-7)  # shift-invariant
    assert float(distillation_loss(-teacher, teacher, "kl")) > 0.1


@pytest.mark.parametrize("mode", ["full", "heads"])
def test_twin_towers_have_separate_parameters(tiny_model, mode):
    model = build_towers(TowerTrainConfig(architecture="twin", mode=mode, backbone=tiny_model))
    router = list(model)[-1]
    query_side, doc_side = router.sub_modules["query"], router.sub_modules["document"]
    query_ptrs = {p.data_ptr() for p in query_side.parameters()}
    assert query_ptrs and not query_ptrs & {p.data_ptr() for p in doc_side.parameters()}
    # a step on the query tower's loss moves the query tower and leaves the document tower unchanged
    trainable = [p for p in model.parameters() if p.requires_grad]
    before_doc = [p.detach().clone() for p in doc_side.parameters()]
    before_query = [p.detach().clone() for p in query_side.parameters()]
    texts = ["alpha beta gamma", "delta epsilon"]
    if mode == "full":
        features = model.preprocess(texts, task="query")
        features["task"] = "query"
        q = model(features)["sentence_embedding"]
    else:
        features = {"sentence_embedding": torch.randn(2, 32), "task": "query"}
        q = router(features)["sentence_embedding"]
    loss = info_nce(q, torch.randn(2, q.shape[1]), 0.05)
    loss.backward()
    torch.optim.SGD(trainable, lr=0.5).step()
    assert all(torch.equal(a, b) for a, b in zip(before_doc, doc_side.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before_query, query_side.parameters()))


def test_shared_model_embeds_text_identically_on_both_sides(tiny_model, tmp_path):
    model = build_towers(TowerTrainConfig(architecture="bi", mode="full", backbone=tiny_model))
    model.save(str(tmp_path / "bi"))
    encoder = SentenceEncoder(str(tmp_path / "bi"))
    texts = ["the same words on both sides", "another text"]
    assert np.array_equal(encoder.encode_queries(texts), encoder.encode_docs(texts))


def test_parameter_count_of_a_twin_is_two_towers(tiny_model):
    one = sum(p.numel() for p in build_towers(TowerTrainConfig(architecture="bi", mode="full", backbone=tiny_model)).parameters())
    two = sum(p.numel() for p in build_towers(TowerTrainConfig(architecture="twin", mode="full", backbone=tiny_model)).parameters())
    assert two == 2 * one


@pytest.mark.parametrize("architecture", ["bi", "twin"])
def test_heads_training_learns_and_reuses_backbone_vectors(tiny_model, architecture):
    splits = load_splits("synthetic", n_docs=120, n_queries=60, n_topics=6, seed=1)
    config = TowerTrainConfig(architecture=architecture, mode="heads", backbone=tiny_model, dataset="synthetic",
                              max_seq_length=64, epochs=30, lr=5e-3, batch_size=16, hard_negatives="none")
    folder = train_towers(config, splits=splits)
    report = json.loads((folder / "training.json").read_text())
    assert report["loss_last_10"] < report["loss_first_10"]
    assert report["train_queries"] == 45 and not report["saw_eval_docs"]  # 60 train queries, 15 held out as dev
    assert train_towers(config, splits=splits) == folder  # cached: a second call finds it
    encoder = SentenceEncoder(str(folder))
    assert encoder.mode == "heads" and encoder.frozen_backbone is not None
    test = synthetic_dataset(n_docs=120, n_queries=10, n_topics=6, seed=1)
    projected = embed_dataset(encoder, test)
    # projecting the backbone's cached vectors equals running the saved model end to end
    np.testing.assert_allclose(projected.docs[:5], encoder.encode_docs(test.doc_texts[:5]), atol=1e-5)
    np.testing.assert_allclose(projected.queries[:5], encoder.encode_queries(test.query_texts[:5]), atol=1e-5)
    if architecture == "twin":  # trained heads differ, so the same text differs by side
        assert not np.allclose(encoder.encode_queries(test.doc_texts[:3]), encoder.encode_docs(test.doc_texts[:3]))


def test_full_training_with_hard_negatives_and_distillation(tiny_model, tiny_cross_encoder):
    splits = load_splits("synthetic", n_docs=80, n_queries=16, n_topics=4, seed=2)
    config = TowerTrainConfig(architecture="twin", mode="full", backbone=tiny_model, dataset="synthetic",
                              max_seq_length=32, epochs=1, batch_size=8, hard_negatives="bm25", neg_rank_lo=1,
                              neg_rank_hi=10, kd="kl", kd_depth=4, teacher=tiny_cross_encoder, teacher_max_length=64)
    folder = train_towers(config, splits=splits)
    report = json.loads((folder / "training.json").read_text())
    assert report["train_queries"] == 12 and report["steps"] == 1 and report["config"]["kd"] == "kl"
    assert SentenceEncoder(str(folder)).n_parameters() == report["parameters"]


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="architecture"):
        TowerTrainConfig(architecture="triple")
    with pytest.raises(ValueError, match="kd"):
        TowerTrainConfig(kd="l2")
    assert TowerTrainConfig(mode="full").lr == 2e-5 and TowerTrainConfig(mode="heads").epochs == 10
    with pytest.raises(ValueError, match="normalize = false trains a full tower only"):
        TowerTrainConfig(mode="heads", normalize=False)


@pytest.mark.parametrize("architecture", ["bi", "twin"])
def test_a_dot_product_tower_trains_and_serves_raw_vectors(tiny_model, architecture):
    """normalize = false (full mode): no Normalize module in the saved model, InfoNCE over raw inner products, and
    served by the sweep's encoder without normalization (its own model key: a normalized tower's key is unchanged)."""
    from bench.models.train.towers import model_dir

    splits = load_splits("synthetic", n_docs=80, n_queries=16, n_topics=4, seed=2)
    options = dict(architecture=architecture, mode="full", backbone=tiny_model, dataset="synthetic", max_seq_length=32,
                   epochs=1, batch_size=8, hard_negatives="none")
    dot = TowerTrainConfig(**options, tau=1.0, normalize=False)
    assert model_dir(dot, splits) != model_dir(TowerTrainConfig(**options, tau=1.0), splits)
    folder = train_towers(dot, splits=splits)
    assert json.loads((folder / "training.json").read_text())["config"]["normalize"] is False
    encoder = SentenceEncoder(str(folder), 32, normalize=False)
    norms = np.linalg.norm(encoder.encode_docs(splits.train.doc_texts[:8]), axis=1)
    assert not np.allclose(norms, 1.0)
    assert "Normalize" not in {type(m).__name__ for m in encoder.model.modules()}
