from pathlib import Path

import numpy as np

from bench.datasets import synthetic_dataset
from bench.encoders import SentenceEncoder, embed_dataset, model_identity, resolve_model


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
