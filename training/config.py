"""Training configuration: a YAML file, overridden by command-line flags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from retriever.errors import RetrieverError

ADORE_LEARNING_RATE = 5e-6  # DRhard adore/train.py's default
LossName = Literal["contrastive", "mw", "mnrl", "star"]


class TrainConfig(BaseModel):
    """Everything a training run needs; every field can come from YAML or a flag."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["finetune", "adore", "soft-tokens"] = "finetune"
    data: str = "scifact"
    split: str = "train"
    dev_split: str = "dev"
    model: str = "default"
    loss: LossName = "contrastive"
    temperature: float | None = Field(None, gt=0, description="tau; default 0.05 (contrastive) or 0.01 (MW)")
    batch_size: int = Field(32, ge=2)
    learning_rate: float = Field(2e-5, gt=0, description="default 2e-5; ADORE 5e-6 (the official default)")
    epochs: float = Field(1.0, gt=0)
    max_steps: int = -1
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    max_seq_length: int = Field(256, ge=8)
    query_max_seq_length: int | None = None
    seed: int = 42
    output: Path = Path("models/run")
    negatives_file: Path | None = None
    n_negatives: int = Field(0, ge=0)
    negative_sampling: Literal["random", "top"] = "random"
    max_pairs: int | None = Field(None, ge=1, description="subsample training pairs (seeded)")
    dev_corpus_size: int = Field(1000, ge=0, description="dev positives plus this many other docs")
    eval_steps: int | None = Field(None, ge=1, description="default: once per epoch")
    save_steps: int = Field(50, ge=1)
    early_stopping_patience: int | None = Field(3, ge=1)
    min_epochs: int = Field(0, ge=0, description="early stopping never stops before this many epochs")
    rows: Literal["pair", "query"] = Field(
        "pair", description="pair: one row per labelled pair; query: one row per training query per epoch with "
        "a positive sampled by grade (Tevatron's convention; ADORE and soft tokens)")
    resume: bool = False
    index: str | None = Field(None, description="ADORE: index of the frozen document encoder")
    adore_top_k: int = Field(200, ge=1, description="ADORE: dynamic negatives retrieved per query")
    adore_normalize: Literal["pairs", "sum", "weights"] = Field(
        "pairs", description="ADORE: pairs = the official loss (each query's mean over its (relevant, "
        "non-relevant) pairs, then the batch mean); sum = sum over pairs / batch; weights = each query's ΔMRR "
        "weights scaled to sum to 1")
    update_index: bool = Field(True, description="ADORE: write an index version naming the new query tower")
    soft_tokens: int = Field(16, ge=1, description="soft-tokens: K learnable vectors")
    soft_layers: int = Field(1, ge=1, description="soft-tokens: re-set at the input of the first n layers")
    side: Literal["query", "doc", "both"] = "query"
    mw_normalize: Literal["pairs", "batch"] = Field("pairs", description="MW: mean over pairs, or the paper's 1/B")
    debias: Literal["none", "cet"] = Field("none", description="cet: CET weights on STAR's pairs (needs --loss star)")
    debias_ratio: float = Field(10.0, gt=0, description="CET's T (10, the official ranker.sh)")

    @field_validator("split", "dev_split")
    @classmethod
    def _split_name(cls, value: str) -> str:
        if value not in ("train", "dev", "test"):
            raise ValueError("must be train, dev or test")
        return value

    @model_validator(mode="after")
    def _method_defaults(self) -> TrainConfig:
        if self.method == "adore" and "learning_rate" not in self.model_fields_set:
            self.learning_rate = ADORE_LEARNING_RATE
        if self.rows == "query" and self.method == "finetune":
            raise ValueError("rows=query (one row per query per epoch) is implemented for --method soft-tokens "
                             "(ADORE is per query already); finetune takes every labelled pair")
        return self

    @property
    def tau(self) -> float:
        return self.temperature or (0.01 if self.loss == "mw" else 0.05)


def load_config(path: Path | None, overrides: dict, model: type[BaseModel] = TrainConfig):
    """Merge a YAML file with the flags that were given (``None`` means not given) into ``model``."""
    raw: dict = {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise RetrieverError(f"cannot read config {path}: {str(exc).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise RetrieverError(f"config {path} must be a YAML mapping")
    raw |= {k: v for k, v in overrides.items() if v is not None}
    try:
        return model(**raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RetrieverError(f"invalid training config: {where}: {first['msg']}") from None
