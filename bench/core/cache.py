"""A content-keyed on-disk cache for expensive arrays (embeddings), written atomically."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """`$BENCH_CACHE_DIR`, else `.cache/` in the working directory (git-ignored)."""
    return Path(os.environ.get("BENCH_CACHE_DIR", ".cache"))


def content_key(parts: dict) -> str:
    """A stable hash of a JSON-serializable description of an artifact."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def atomic_write_bytes(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` then rename tmp over `path`, so readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_if_changed(path: Path, text: str) -> None:
    """Write `text` to `path` atomically, unless it already holds exactly that (regenerated outputs keep their
    timestamps and bytes)."""
    if not path.exists() or path.read_text() != text:
        atomic_write_bytes(path, lambda tmp: tmp.write_text(text))


def _save_npy(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as handle:  # a handle, since np.save would append ".npy" to the temp name
        np.save(handle, array)


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _npy_reads(path: Path) -> bool:
    try:
        np.load(path, mmap_mode="r")
        return True
    except (ValueError, OSError, EOFError):
        return False


def write_digest(path: Path) -> None:
    """The `.sha256` sidecar of a cached file, written (atomically) after the file itself."""
    atomic_write_bytes(path.with_name(path.name + ".sha256"), lambda tmp: tmp.write_text(file_digest(path) + "\n"))


def checked(path: Path, reads: Callable[[Path], bool] = _npy_reads) -> bool:
    """Whether cached `path` holds the bytes its `.sha256` sidecar (written after the data) names. An entry from
    before sidecars gets one now if `reads` accepts it. A bad entry is named, removed and reported False (the
    caller rebuilds it)."""
    sidecar = path.with_name(path.name + ".sha256")
    if sidecar.exists():
        ok = sidecar.read_text().strip() == file_digest(path)
    else:
        ok = reads(path)
        if ok:
            write_digest(path)
    if not ok:
        log.warning("%s: cache entry does not match its checksum (corrupt or truncated); removed, rebuilding", path)
        for stale in (path, sidecar):
            stale.unlink(missing_ok=True)
    return ok


def cached_array(kind: str, parts: dict, compute: Callable[[], np.ndarray]) -> tuple[np.ndarray, bool]:
    """Load the array stored under the key of `parts`, or compute and store it. Returns (array, was_cached).

    Every entry carries a sha256 sidecar written after its data; an entry whose bytes do not match it (zero-filled,
    truncated, edited) is named, discarded and computed again."""
    key = content_key(parts)
    path = cache_dir() / kind / f"{key}.npy"
    if path.exists() and checked(path):
        return np.load(path), True
    array = compute()
    atomic_write_bytes(path, lambda tmp: _save_npy(tmp, array))
    write_digest(path)
    atomic_write_bytes(path.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(parts, indent=1, default=str)))
    log.info("cached %s %s", kind, path)
    return array, False


def folder_digest(folder: Path) -> str:
    """sha256 of a folder's files: their paths and bytes."""
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(folder)).encode())
        digest.update(file_digest(file).encode())
    return digest.hexdigest()


def write_folder_digest(folder: Path) -> None:
    """`<folder>.sha256` beside a trained model's folder (outside it: the model's identity hashes its files)."""
    atomic_write_bytes(folder.with_name(folder.name + ".sha256"), lambda tmp: tmp.write_text(folder_digest(folder) + "\n"))


def folder_checked(folder: Path) -> bool:
    """Whether a trained model's folder holds the files its `.sha256` names (one from before sidecars gets one now).
    A bad folder is named, removed and reported False: the caller trains it again."""
    sidecar = folder.with_name(folder.name + ".sha256")
    if not sidecar.exists():
        write_folder_digest(folder)
        return True
    if sidecar.read_text().strip() == folder_digest(folder):
        return True
    log.warning("%s: trained model does not match its checksum (corrupt or edited); removed, training again", folder)
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    sidecar.unlink(missing_ok=True)
    return False
