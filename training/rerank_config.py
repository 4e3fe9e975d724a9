"""Reranker training configuration (``retriever train-reranker``): YAML plus flag overrides, as for ``train``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from retriever.rerank.registry import ARCHITECTURES
from retriever.tables import table_entry
from training.rerank_objectives import objective, objectives_help


class RerankerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    arch: str = Field("cross-encoder", description=" | ".join(ARCHITECTURES))
    objective: str = Field("sft", description=objectives_help())
    model: str | None = Field(None, description="start checkpoint; default MiniLM (cross-encoder) or smollm2")
    data: str = Field("scifact", description="Dataset name or BEIR folder.")
    split: str = Field("train", description="Training split.")
    negatives_file: Path | None = Field(None, description="retriever mine output for the training split")
    n_hard: int = Field(3, ge=0, description="mined negatives per group, sampled from the top hard_pool")
    n_easy: int = Field(4, ge=0, description="random corpus negatives per group")
    hard_pool: int = Field(30, ge=1, description="sample hard negatives from this many top mined ones")
    max_groups: int | None = Field(None, ge=1, description="subsample (query, positive) groups, seeded")
    rows: Literal["pair", "query"] = Field(
        "pair", description="pair: one group per labelled pair; query: one per training query, positive by grade")
    batch_size: int = Field(8, ge=1, description="groups (queries) per step")
    learning_rate: float = Field(2e-5, gt=0, description="lr of the model (the body, for a cross-encoder)")
    head_learning_rate: float = Field(
        1e-3, gt=0, description="cross-encoder: lr of the new scoring head (a freshly initialised head learns "
        "too slowly at the encoder's lr)")
    epochs: float = Field(1.0, gt=0, description="Passes over the training groups.")
    max_steps: int = Field(-1, description="Stop after this many steps (-1: run the epochs).")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Linear warm-up over this fraction of the steps.")
    max_length: int = Field(256, ge=16, description="Tokens per (query, document) pair.")
    temperature: float = Field(1.0, gt=0, description="CL softmax temperature over the scores")
    sft_pos_weight: float | None = Field(
        None, gt=0, description="SFT: weight of each positive's term (None = 1, the paper's plain cross-entropy; "
        "n_hard + n_easy balances one positive against its negatives)")
    seed: int = Field(42, description="Seed of sampling, shuffling and initialisation.")
    output: Path = Field(Path("models/reranker"), description="Output folder (the trained reranker).")
    save_steps: int = Field(50, ge=1, description="Checkpoint every this many steps.")
    resume: bool = Field(False, description="Continue from the latest checkpoint in --output.")
    dev_index: str | None = Field(None, description="index whose top dev_depth dev candidates are reranked")
    dev_split: str = Field("dev", description="Held-out split for dev nDCG@10.")
    dev_depth: int = Field(20, ge=1, description="dev candidates per query (from --dev-index) to rerank")
    eval_steps: int | None = Field(None, ge=1, description="default: at the end only")
    early_stopping_patience: int | None = Field(3, ge=1, description="Stop after this many dev evaluations "
                                                "without improvement.")
    debias: Literal["none", "cet"] = Field("none", description="none | cet (needs --objective pair)")
    debias_ratio: float = Field(10.0, gt=0, description="CET's T (10, the official ranker.sh)")
    selection_model: str | None = Field(None, description="CET: start of the selection model (default: model)")

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str) -> str:
        table_entry(ARCHITECTURES, "reranker architecture", value)
        return value

    @field_validator("objective")
    @classmethod
    def _known_objective(cls, value: str) -> str:
        objective(value)
        return value

    @model_validator(mode="after")
    def _check(self) -> RerankerConfig:
        if self.n_hard + self.n_easy < 1:
            raise ValueError("a group needs at least one negative (n_hard + n_easy >= 1)")
        if self.debias == "cet" and not objective(self.objective).debiasable:
            raise ValueError("--debias cet weights pairwise losses: use --objective pair")
        return self

    @property
    def start_model(self) -> str:
        return self.model or ("default" if self.arch == "cross-encoder" else "smollm2")
