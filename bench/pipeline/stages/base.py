"""What every stage kind provides (see bench.pipeline.stages)."""

from __future__ import annotations

import json
import re
from typing import ClassVar, Protocol

HIDDEN = {"seed", "random_init", "training_sample_size"}  # in the key, not in names


class Retriever(Protocol):
    kind: ClassVar[str]
    output: ClassVar[str]  # what its encoder hands the index: "vectors", "text" or "hybrid"

    @classmethod
    def of_row(cls, row) -> "Retriever": ...

    def key(self) -> dict:
        """What makes two runs the same stage on any dataset (JSON-able; hashed into the pipeline id)."""

    def name(self) -> str:
        """Readable, the same on every dataset."""

    def tuned(self) -> dict[str, float]:
        """The values its tuned settings took on this run (results, not identity)."""


def params(text: str) -> dict:
    return json.loads(text) if text else {}


def params_name(values: dict, short: dict[str, str] | None = None) -> str:
    short = short or {}
    return " ".join(f"{short.get(k, k)}={v}" for k, v in sorted(values.items()) if k not in HIDDEN and v is not None)


_TRAINED = re.compile(r"^(?:.*/)?(?P<base>.+?)(?:-[0-9a-f]{16,})?$")


def model_name(identity: str) -> str:
    """A model's identity (`<path or hub name>@sha256:<digest>[|variant]`) as a short readable name that still
    tells models apart: the name without its folder or cache hash, the digest's first 8 characters, the variant
    (`all-MiniLM-L6-v2@83c1a1b1`, `cross-listwise@9dee9ac8|max_length=192`)."""
    head, _, variant = identity.partition("|")
    path, _, digest = head.partition("@")
    base = _TRAINED.match(path).group("base") if path else head
    digest = digest.removeprefix("sha256:")[:8]
    return base + (f"@{digest}" if digest else "") + (f"|{variant}" if variant else "")


class FirstStageKind:
    """What a kind of first stage says beyond describing a row, with a dense retriever's as the default: what it is
    made of, its grid's extra dimension, how it grows with N. How it is measured (its encoder, index and ground truth)
    is the run's (bench.run.hooks). The sweep, the planner and the config ask the registry
    (bench.pipeline.stages.KINDS), never the kind's name."""

    output: ClassVar[str] = "vectors"
    searched: ClassVar[str] = "vectors"  # the `input` of the backends its index runs on (bench.search.indexes)

    @classmethod
    def made_of(cls, spec) -> str | None:
        """The config encoder (its name) a stage of this kind is built on and identified by, or None: its own model."""
        return None

    @classmethod
    def depths(cls, spec) -> list:
        """Extra grid dimension of its search (a fusion's depth per side); [None] for none."""
        return [None]

    @classmethod
    def scale_note(cls, dense_note: str) -> str:
        """The cost table's note on how it grows with N, given the scale series' note for a dense index."""
        return dense_note
