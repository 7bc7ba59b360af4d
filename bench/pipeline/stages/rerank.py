"""A reranker: a cross-encoder re-scoring the first stage's top R, fused with its scores at weight alpha."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bench.pipeline.stages.base import model_label


@dataclass(frozen=True)
class Rerank:
    kind: ClassVar[str] = "rerank"
    model: str  # the cross-encoder's identity (its max length included)
    r: int
    alpha: float  # as run: alpha * cross + (1 - alpha) * first stage
    alpha_chosen_on: str = ""  # "dev": tuned on the dev queries (or on test where none exist: the row says so)
    adaptive: bool = False  # an adaptive depth up to R, its stopping rule chosen on dev (bench.run.adaptive)

    @classmethod
    def of_row(cls, row) -> "Rerank":
        return cls(row["reranker_identity"], int(row["r"]), float(row["fusion_alpha"]),
                   row.get("fusion_alpha_chosen_on", "") or "", bool(row.get("rerank_depth_rule", "") or ""))

    def key(self) -> dict:
        key = {"kind": self.kind, "model": self.model, "r": self.r,
               "alpha": "chosen on dev" if self.alpha_chosen_on == "dev" else self.alpha}
        if self.adaptive:  # only then: the ids of fixed-depth pipelines stay as they were
            key["depth"] = "adaptive, rule chosen on dev"
        return key

    def name(self, tuned: dict[str, float] | None = None) -> str:
        """`listwise CE #9dee (192 tokens), alpha chosen on dev`; with `tuned`, the alpha it took."""
        if self.alpha_chosen_on == "dev":
            alpha = f"alpha {tuned['alpha']:.2f} (dev)" if tuned and "alpha" in tuned else "alpha chosen on dev"
        elif self.alpha_chosen_on:  # on the test queries, where a dataset has none for dev (the id says "as run")
            alpha = f"alpha {self.alpha:.2f} chosen on {self.alpha_chosen_on}"
        else:
            alpha = f"alpha={self.alpha:g}"
        depth = ", adaptive depth (rule chosen on dev)" if self.adaptive else ""
        return f"{model_label(self.model)}, {alpha}{depth}"

    def tuned(self) -> dict[str, float]:
        return {"alpha": self.alpha} if self.alpha_chosen_on == "dev" else {}
