"""Reranker training configuration (``retriever train-reranker``): YAML plus flag overrides, as for ``train``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class RerankerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    arch: Literal["cross-encoder", "causal-lm"] = "cross-encoder"
    objective: Literal["sft", "cl", "pair"] = "sft"
    model: str | None = Field(None, description="start checkpoint; default MiniLM (cross-encoder) or smollm2")
    data: str = "scifact"
    split: str = "train"
    negatives_file: Path | None = Field(None, description="retriever mine output for the training split")
    n_hard: int = Field(3, ge=0, description="mined negatives per group, sampled from the top hard_pool")
    n_easy: int = Field(4, ge=0, description="random corpus negatives per group")
    hard_pool: int = Field(30, ge=1)
    max_groups: int | None = Field(None, ge=1, description="subsample (query, positive) groups, seeded")
    rows: Literal["pair", "query"] = Field(
        "pair", description="pair: one group per labelled pair; query: one per training query, positive by grade")
    batch_size: int = Field(8, ge=1, description="groups (queries) per step")
    learning_rate: float = Field(2e-5, gt=0)
    head_learning_rate: float = Field(
        1e-3, gt=0, description="cross-encoder: lr of the new scoring head (a freshly initialised head learns "
        "too slowly at the encoder's lr)")
    epochs: float = Field(1.0, gt=0)
    max_steps: int = -1
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    max_length: int = Field(256, ge=16)
    temperature: float = Field(1.0, gt=0, description="CL softmax temperature over the scores")
    sft_pos_weight: float | None = Field(
        None, gt=0, description="SFT: weight of each positive's term (None = 1, the paper's plain cross-entropy; "
        "n_hard + n_easy balances one positive against its negatives)")
    seed: int = 42
    output: Path = Path("models/reranker")
    save_steps: int = Field(50, ge=1)
    resume: bool = False
    dev_index: str | None = Field(None, description="index whose top dev_depth dev candidates are reranked")
    dev_split: str = "dev"
    dev_depth: int = Field(20, ge=1)
    eval_steps: int | None = Field(None, ge=1, description="default: at the end only")
    early_stopping_patience: int | None = Field(3, ge=1)
    debias: Literal["none", "cet"] = "none"
    debias_ratio: float = Field(10.0, gt=0, description="CET's T (10, the official ranker.sh)")
    selection_model: str | None = Field(None, description="CET: start of the selection model (default: model)")

    @model_validator(mode="after")
    def _check(self) -> RerankerConfig:
        if self.n_hard + self.n_easy < 1:
            raise ValueError("a group needs at least one negative (n_hard + n_easy >= 1)")
        if self.debias == "cet" and self.objective != "pair":
            raise ValueError("--debias cet weights pairwise losses: use --objective pair")
        return self

    @property
    def start_model(self) -> str:
        return self.model or ("default" if self.arch == "cross-encoder" else "smollm2")
