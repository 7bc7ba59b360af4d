"""The cache under faults: every embedding entry is checked against the sha256 written after it; a corrupt or
truncated entry is named, discarded and rebuilt; a corrupt speeds file is ignored with a warning."""

import dataclasses
import logging

import numpy as np
import pytest

from bench.core.cache import cache_dir, cached_array

HEADER = 128  # np.save's header for these arrays: the data starts after it


def corrupt(path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "zero-filled":
        data[HEADER:] = bytes(len(data) - HEADER)  # same size, header intact: np.load reads zeros without a check
    else:
        data = data[: len(data) // 2]
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["zero-filled", "truncated"])
def test_a_corrupt_entry_is_named_discarded_and_rebuilt(how, caplog):
    calls = []

    def compute():
        calls.append(1)
        return np.arange(64, dtype=np.float32).reshape(8, 8)

    first, cached = cached_array("t", {"k": how}, compute)
    assert not cached and (cache_dir() / "t").glob("*.npy.sha256")
    path = next((cache_dir() / "t").glob("*.npy"))
    corrupt(path, how)
    with caplog.at_level(logging.WARNING):
        again, cached = cached_array("t", {"k": how}, compute)
    assert not cached and len(calls) == 2 and np.array_equal(again, first)
    assert str(path) in caplog.text and "does not match its checksum" in caplog.text
    assert cached_array("t", {"k": how}, compute)[1] and len(calls) == 2  # rebuilt entry: cached again


def test_a_corrupt_speeds_file_is_ignored_with_a_warning(caplog):
    from bench.run.estimate import Speeds

    path = cache_dir() / "speeds.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"encode_docs_per_s": 40.0, ')  # cut off mid-write
    with caplog.at_level(logging.WARNING):
        speeds = Speeds()
    assert speeds.values == {} and "speeds.json: ignored" in caplog.text
    speeds.record("cell_s", 0.5)
    assert Speeds().values == {"cell_s": 0.5}


def test_a_zero_filled_corpus_entry_gives_the_clean_run_quality(tiny_model, tmp_path):
    from bench.pipeline.config import load_config
    from bench.store.results import read_results
    from bench.run.sweep import run_sweep

    base = load_config("configs/tiny.toml")
    config = dataclasses.replace(base, encoders=[dataclasses.replace(base.encoders[0], model=tiny_model)],
                                 backends=[b for b in base.backends if b.backend == "exact"],
                                 results=str(tmp_path / "r.parquet"))
    run_sweep(config)
    clean = read_results(config.results_path).set_index("cell_id")["q_ndcg_at_10"].map(list)
    entries = [p for p in (cache_dir() / "corpus").glob("*.npy")]
    assert entries
    for path in entries:
        corrupt(path, "zero-filled")
    summary = run_sweep(config, redo=True)
    assert summary.corpora_encoded == 1  # detected and rebuilt
    again = read_results(config.results_path).set_index("cell_id")["q_ndcg_at_10"].map(list)
    assert again.to_dict() == clean.to_dict()


def test_a_corrupt_score_database_is_set_aside_and_started_afresh(tmp_path, caplog):
    from bench.models.rerankers import ScoreCache

    path = tmp_path / "scores.sqlite"
    cache = ScoreCache(path)
    cache.put("m", "d", [("q", "a", 1.0)])
    cache.db.close()
    path.write_bytes(b"SQLite format 3\x00" + bytes(4096))  # a header, then zeros: not a database
    with caplog.at_level(logging.WARNING):
        fresh = ScoreCache(path)
    assert fresh.get("m", "d", "q") == {} and "score cache is corrupt" in caplog.text
    assert path.with_name("scores.sqlite.corrupt").exists()
    fresh.put("m", "d", [("q", "a", 2.0)])
    assert ScoreCache(path).get("m", "d", "q") == {"a": 2.0}


def test_the_next_run_exits_0_after_a_stray_temp_file_and_a_corrupt_speeds_file(tiny_model, tmp_path, capsys):
    from pathlib import Path

    from bench.cli import main
    from bench.store.results import read_results

    text = Path("configs/tiny.toml").read_text().replace('model = "sentence-transformers/all-MiniLM-L6-v2"',
                                                         f'model = "{tiny_model}"')
    config = tmp_path / "tiny.toml"
    config.write_text(text.split('[[backends]]\nbackend = "faiss_ivf"')[0])
    results = tmp_path / "r.parquet"
    parts = tmp_path / ".r.parquet.parts"
    parts.mkdir()
    (parts / ".00000000000000000001.parquet.999999.tmp").write_bytes(b"half a part")  # a killed writer's
    (cache_dir() / "speeds.json").parent.mkdir(parents=True, exist_ok=True)
    (cache_dir() / "speeds.json").write_text("{not json")
    assert main(["run", str(config), "--results", str(results)]) == 0
    assert len(read_results(results)) > 0 and not list(tmp_path.rglob("*.tmp"))
    assert main(["run", str(config), "--results", str(results)]) == 0
    assert "0 rows measured and 0 re-timed" in capsys.readouterr().out


def test_a_trained_model_folder_is_checked_beside_itself(caplog):
    """Trained models carry `<folder>.sha256` beside the folder (their identity hashes the folder's files, which
    the sidecar must not change); a corrupt file is named and the folder removed, so it is trained again."""
    from bench.core.cache import folder_checked, write_folder_digest
    from bench.models.encoders import model_identity

    folder = cache_dir() / "models" / "tower-abc"
    folder.mkdir(parents=True)
    (folder / "weights.bin").write_bytes(b"\x01" * 64)
    (folder / "training.json").write_text("{}")
    identity = model_identity(str(folder))
    write_folder_digest(folder)
    model_identity.cache_clear()
    assert model_identity(str(folder)) == identity and folder_checked(folder)
    (folder / "weights.bin").write_bytes(b"\x00" * 64)  # zero-filled at the same size
    with caplog.at_level(logging.WARNING):
        assert not folder_checked(folder)
    assert not folder.exists() and "tower-abc: trained model does not match its checksum" in caplog.text
