"""The training options of the harness's trainers, typed and validated here, so that a config is checked when it
is parsed without importing the trainers (bench.models.train.towers, bench.models.train.cross) or what they need."""

from __future__ import annotations

from dataclasses import dataclass

from bench.models.encoders import DEFAULT_MODEL

ARCHITECTURES = ("bi", "twin")
MODES = ("heads", "full")
HARD_NEGATIVES = ("bi", "bm25", "none")
DISTILLATION = ("none", "kl", "mse")
MODE_DEFAULTS = {"heads": {"epochs": 10, "lr": 1e-3}, "full": {"epochs": 1, "lr": 2e-5}}


@dataclass(frozen=True)
class TowerTrainConfig:
    architecture: str = "bi"  # "bi": shared weights; "twin": separate query and document networks
    mode: str = "heads"  # "heads": projection heads over a frozen backbone; "full": fine-tune everything
    backbone: str = DEFAULT_MODEL
    dataset: str = "scifact"
    max_seq_length: int = 256
    tau: float = 0.05
    hard_negatives: str = "bi"  # who mines them: the pretrained bi-encoder, BM25, or "none"
    neg_rank_lo: int = 3
    neg_rank_hi: int = 40
    kd: str = "none"  # distillation from the cross-encoder: "none", "kl", "mse"
    kd_weight: float = 1.0
    kd_depth: int = 16  # candidates per query scored by the teacher: the pretrained bi-encoder's top-kd_depth
    teacher: str = "listwise"  # the loss of a cross-encoder trained by `bench train-cross`, or a model path
    teacher_max_length: int = 192
    epochs: int | None = None  # None: the mode's default (heads 10, full 1)
    lr: float | None = None  # None: the mode's default (heads 1e-3, full 2e-5)
    batch_size: int = 32
    seed: int = 0
    # false ("full" mode only): a dot-product tower, trained and served on raw pooled vectors (no Normalize module,
    # InfoNCE over raw inner products: set tau = 1 so the norms carry the scale)
    normalize: bool = True

    def __post_init__(self):
        for name, allowed in (("architecture", ARCHITECTURES), ("mode", MODES),
                              ("hard_negatives", HARD_NEGATIVES), ("kd", DISTILLATION)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got '{getattr(self, name)}'")
        if self.tau <= 0:
            raise ValueError(f"tau must be > 0, got {self.tau}")
        if not 0 <= self.neg_rank_lo < self.neg_rank_hi:
            raise ValueError(f"need 0 <= neg_rank_lo < neg_rank_hi, got {self.neg_rank_lo}, {self.neg_rank_hi}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (in-batch negatives), got {self.batch_size}")
        if not self.normalize and self.mode != "full":
            raise ValueError("normalize = false trains a full tower only (heads read the backbone's normalized vectors)")
        for name, value in MODE_DEFAULTS[self.mode].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)


TOWER_FIELDS_ADDED = {"normalize": True}  # left out of a tower's model key at these defaults


LOSSES = ("bce", "margin", "listwise")
MINERS = ("dense", "bm25", "dense+bm25")


@dataclass(frozen=True)
class CrossTrainConfig:
    backbone: str = DEFAULT_MODEL
    dataset: str = "scifact"
    first_stage: str = DEFAULT_MODEL  # bi-encoder that mines negatives and gives the fusion's first-stage score
    loss: str = "listwise"
    epochs: int = 1
    lr: float = 5e-5
    batch_queries: int = 2  # lists per optimizer step; pairs per step = batch_queries * (1 + negatives)
    negatives: int = 7
    neg_rank_lo: int = 3
    neg_rank_hi: int = 40
    max_length: int = 192
    margin: float = 1.0
    dev_r: int = 20  # first-stage depth reranked on the dev queries to fit calibration and choose alpha
    seed: int = 0
    mine_from: str = "dense"  # first stages whose ranks give the negatives: "dense", "bm25" or "dense+bm25"
    title_queries: int = 0  # documents whose title becomes an extra training query (positive: the document)
    sentence_queries: int = 0  # documents one of whose sentences becomes a query for the rest of the document
    distill: float = 0.0  # weight of the KL term towards the first-stage bi-encoder's scores over each list
    distill_temperature: float = 0.05  # the bi-encoder's cosines are divided by this before the softmax

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got '{self.loss}'")
        if self.dev_r < 1:
            raise ValueError(f"dev_r must be >= 1, got {self.dev_r}")
        if not 0 <= self.neg_rank_lo < self.neg_rank_hi:
            raise ValueError(f"need 0 <= neg_rank_lo < neg_rank_hi, got {self.neg_rank_lo}, {self.neg_rank_hi}")
        if self.mine_from not in MINERS:
            raise ValueError(f"mine_from must be one of {MINERS}, got '{self.mine_from}'")
        for name in ("title_queries", "sentence_queries", "distill"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.distill_temperature <= 0:
            raise ValueError(f"distill_temperature must be > 0, got {self.distill_temperature}")


FIELDS_ADDED = {"mine_from": "dense", "title_queries": 0, "sentence_queries": 0, "distill": 0.0,
                "distill_temperature": 0.05}  # left out of the model key at these defaults
