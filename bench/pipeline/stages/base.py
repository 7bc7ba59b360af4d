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
        """Readable, the same on every dataset; one name per stage (bench.pipeline.ids says how a pipeline reads)."""

    def complete(self) -> bool:
        """Whether it ranks every candidate by its exact score, so that its top 10 is the same for every K >= 10."""

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


# Well-known models by the name search engineers use; a trained model (a cache folder with its recipe's hash) keeps
# its recipe's name and the first 4 hex digits of its weights' digest, so that two sets of weights never share a name.
MODEL_LABELS = {"all-MiniLM-L6-v2": "MiniLM", "all-mpnet-base-v2": "MPNet", "multilingual-e5-small": "e5-small",
                "cross-listwise": "listwise CE", "cross-pointwise": "pointwise CE"}
VARIANT_LABELS = {"query=int8": "int8 queries", "docs=int8": "int8 docs", "query_runtime=onnxruntime": "ONNX queries",
                  "query=fp16": "fp16 queries", "docs=fp16": "fp16 docs"}
_AS_DEFAULT = re.compile(r"^(query|docs)=fp32$|^device=cpu$|^doc_runtime=torch$|^query_runtime=torch$")


def model_label(identity: str) -> str:
    """A model's identity as a name a person reads, still one name per set of weights: `MiniLM`, `bi-heads #086f`,
    `listwise CE #9dee (192 tokens)`, `MiniLM (int8 queries)`."""
    head, _, variant = identity.partition("|")
    path, _, digest = head.partition("@")
    folder = path.rsplit("/", 1)[-1]
    base = _TRAINED.match(path).group("base") if path else head
    label = MODEL_LABELS.get(base, base)
    if base != folder:  # trained here: its weights are what tells it apart
        label += f" #{digest.removeprefix('sha256:')[:4]}"
    words = []
    for part in filter(None, variant.split(",")):
        if part.startswith("max_length="):
            words.append(f"{part.partition('=')[2]} tokens")
        elif not _AS_DEFAULT.match(part):
            words.append(VARIANT_LABELS.get(part, part))
    return label + (f" ({', '.join(words)})" if words else "")


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

    def complete(self) -> bool:
        return False

    @classmethod
    def depths(cls, spec) -> list:
        """Extra grid dimension of its search (a fusion's depth per side); [None] for none."""
        return [None]

    @classmethod
    def scale_note(cls, dense_note: str) -> str:
        """The cost table's note on how it grows with N, given the scale series' note for a dense index."""
        return dense_note
