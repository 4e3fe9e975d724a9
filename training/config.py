"""Training configuration: a YAML file, overridden by command-line flags, one class per method.

``TrainConfig(...)`` builds the class of its ``method`` (:class:`FinetuneConfig`, :class:`AdoreConfig`,
:class:`SoftTokensConfig`); each holds the fields its trainer reads, the shared ones coming from
:class:`TrainConfig`, and refuses the others with the method they belong to. The CLI options of
``retriever train`` are generated from these fields (:mod:`training.config_options`), with each field's
description as its help.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from retriever.errors import RetrieverError
from training.losses.registry import LOSSES, loss_spec, losses_help

ADORE_LEARNING_RATE = 5e-6  # DRhard adore/train.py's default
DEFAULT_TEMPERATURE = 0.05
Method = Literal["finetune", "adore", "soft-tokens"]
METHOD_HELP = "finetune | adore (needs --index) | soft-tokens"
ROWS_HELP = ("pair: one row per labelled pair; query: one row per training query per epoch with a positive "
             "sampled by grade (Tevatron's convention; soft tokens)")


class TrainConfig(BaseModel):
    """What every training method reads; ``TrainConfig(method=...)`` returns that method's class."""

    model_config = ConfigDict(extra="forbid")

    method: Method = Field("finetune", description=METHOD_HELP)
    data: str = Field("scifact", description="Dataset name or BEIR folder.")
    split: str = Field("train", description="Training split.")
    dev_split: str = Field("dev", description="Held-out split for evaluation.")
    model: str = Field("default", description="Start model: 'default' or a path/name.")
    batch_size: int = Field(32, ge=2, description="Rows (queries) per step.")
    learning_rate: float = Field(2e-5, gt=0, description="default 2e-5; ADORE 5e-6 (the official default)")
    epochs: float = Field(1.0, gt=0, description="Passes over the training rows.")
    max_steps: int = Field(-1, description="Stop after this many steps (-1: run the epochs).")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Linear warm-up over this fraction of the steps.")
    max_seq_length: int = Field(256, ge=8, description="Tokens per text (documents; queries too unless set).")
    seed: int = Field(42, description="Seed of sampling, shuffling and initialisation.")
    output: Path = Field(Path("models/run"), description="Output folder (a sentence-transformers model).")
    max_pairs: int | None = Field(None, ge=1, description="subsample training pairs (seeded)")
    dev_corpus_size: int = Field(1000, ge=0, description="dev positives plus this many other docs")
    early_stopping_patience: int | None = Field(3, ge=1, description="Stop after this many dev evaluations "
                                                "without improvement.")
    min_epochs: int = Field(0, ge=0, description="early stopping never stops before this many epochs")
    temperature: float | None = Field(None, gt=0, description="tau; the loss's default when not set "
                                      + ", ".join(f"{n} {s.temperature:g}" for n, s in LOSSES.items()))
    resume: bool = Field(False, description="Continue from the latest checkpoint in --output.")
    save_steps: int = Field(50, ge=1, description="Checkpoint every this many steps.")

    def __new__(cls, *args: Any, **data: Any):
        if cls is TrainConfig:
            cls = config_class(data.get("method", "finetune"))
        return super().__new__(cls)

    @model_validator(mode="before")
    @classmethod
    def _fields_of_other_methods(cls, data: Any) -> Any:
        if isinstance(data, dict):
            foreign = sorted(set(data) - set(cls.model_fields))
            if foreign:
                owners = {f: [m for m, c in METHOD_CONFIGS.items() if f in c.model_fields] for f in foreign}
                said = "; ".join(f"{f} ({'/'.join(o)} only)" if o else f"{f} (unknown)" for f, o in owners.items())
                raise ValueError(f"not a field of --method {data.get('method', 'finetune')}: {said}")
        return data

    @field_validator("split", "dev_split")
    @classmethod
    def _split_name(cls, value: str) -> str:
        if value not in ("train", "dev", "test"):
            raise ValueError("must be train, dev or test")
        return value

    @property
    def tau(self) -> float:
        return self.temperature or DEFAULT_TEMPERATURE


class _RowsFromQrels(TrainConfig):
    """Methods that train on (query, positive[, mined negatives]) rows with a loss from the loss table."""

    loss: str = Field("contrastive", description=losses_help())
    negatives_file: Path | None = Field(None, description="Mined hard negatives (retriever mine).")
    n_negatives: int = Field(0, ge=0, description="Hard negatives per row.")
    negative_sampling: Literal["random", "top"] = Field("random", description="random (STAR, default) | top")

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, value: str) -> str:
        loss_spec(value)
        return value

    @model_validator(mode="after")
    def _loss_fits(self) -> _RowsFromQrels:
        spec = loss_spec(self.loss)
        if self.method not in spec.methods:
            raise ValueError(f"--method {self.method} does not implement --loss {self.loss} "
                             f"(it trains: {', '.join(n for n, s in LOSSES.items() if self.method in s.methods)})")
        if spec.needs_negatives and not (self.negatives_file and self.n_negatives):
            raise ValueError(f"--loss {self.loss} needs --negatives-file (from 'retriever mine') and "
                             "--n-negatives >= 1")
        return self

    @property
    def tau(self) -> float:
        return self.temperature or loss_spec(self.loss).temperature


class FinetuneConfig(_RowsFromQrels):
    """``--method finetune``: sentence-transformers' trainer over every labelled pair."""

    method: Literal["finetune"] = Field("finetune", description=METHOD_HELP)
    eval_steps: int | None = Field(None, ge=1, description="default: once per epoch")
    rows: Literal["pair", "query"] = Field("pair", description=ROWS_HELP)
    mw_normalize: Literal["pairs", "batch"] = Field("pairs", description="MW: mean over pairs, or the paper's 1/B")
    debias: Literal["none", "cet"] = Field("none", description="cet: CET weights on STAR's pairs (needs --loss star)")
    debias_ratio: float = Field(10.0, gt=0, description="CET's T (10, the official ranker.sh)")

    @model_validator(mode="after")
    def _finetune_rules(self) -> FinetuneConfig:
        if self.rows == "query" and self.max_pairs is not None:
            raise ValueError("--max-pairs subsamples labelled pairs: it does not combine with --rows query")
        if self.debias == "cet" and self.loss != "star":
            raise ValueError("--debias cet works with --loss star")
        return self


class _AdoreObjective(TrainConfig):
    """ADORE's loss over dynamic negatives (``--method adore``; soft tokens' adore objective)."""

    adore_top_k: int = Field(200, ge=1, description="ADORE: dynamic negatives retrieved per query")
    adore_normalize: Literal["pairs", "sum", "weights"] = Field(
        "pairs", description="ADORE: pairs = the official loss (each query's mean over its (relevant, "
        "non-relevant) pairs, then the batch mean); sum = sum over pairs / batch; weights = each query's ΔMRR "
        "weights scaled to sum to 1")


class AdoreConfig(_AdoreObjective):
    """``--method adore``: the query tower learns against a fixed document index (ΔMRR-weighted pairs)."""

    method: Literal["adore"] = Field("adore", description=METHOD_HELP)
    learning_rate: float = Field(ADORE_LEARNING_RATE, gt=0,
                                 description="default 2e-5; ADORE 5e-6 (the official default)")
    index: str | None = Field(None, description="ADORE: index of the frozen document encoder")
    update_index: bool = Field(True, description="ADORE: write an index version naming the new query tower")
    query_max_seq_length: int | None = Field(None, ge=8, description="ADORE: query tokens (default 64)")


class SoftTokensConfig(_RowsFromQrels, _AdoreObjective):
    """``--method soft-tokens``: SoftREPA-style soft tokens on a frozen encoder."""

    method: Literal["soft-tokens"] = Field("soft-tokens", description=METHOD_HELP)
    soft_tokens: int = Field(16, ge=1, description="soft-tokens: K learnable vectors")
    soft_layers: int = Field(1, ge=1, description="soft-tokens: re-set at the input of the first n layers")
    side: Literal["query", "doc", "both"] = Field("query", description="soft-tokens: query (default) | doc | both")
    rows: Literal["pair", "query"] = Field("pair", description=ROWS_HELP)
    objective: Literal["infonce", "adore"] = Field(
        "infonce", description="soft-tokens: infonce (in-batch plus mined negatives, or MW with --loss mw) | adore "
        "(query side only: ADORE's loss over negatives re-retrieved from the frozen corpus vectors)")

    @model_validator(mode="after")
    def _objective_fits(self) -> SoftTokensConfig:
        if self.objective == "adore" and self.side != "query":
            raise ValueError("--objective adore needs --side query (documents keep their frozen vectors)")
        return self


METHOD_CONFIGS: dict[str, type[TrainConfig]] = {
    "finetune": FinetuneConfig, "adore": AdoreConfig, "soft-tokens": SoftTokensConfig}


def config_class(method: str) -> type[TrainConfig]:
    if method not in METHOD_CONFIGS:
        raise RetrieverError(f"invalid training config: method: one of {', '.join(METHOD_CONFIGS)}, not '{method}'")
    return METHOD_CONFIGS[method]


def load_config(path: Path | None, overrides: dict, model: type[BaseModel] = TrainConfig):
    """Merge a YAML file with the flags that were given (``None`` means not given) into ``model`` (for
    :class:`TrainConfig`, the class of the merged ``method``)."""
    raw: dict = {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise RetrieverError(f"cannot read config {path}: {str(exc).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise RetrieverError(f"config {path} must be a YAML mapping")
    raw |= {k: v for k, v in overrides.items() if v is not None}
    if model is TrainConfig:
        model = config_class(raw.get("method", "finetune"))
    try:
        return model(**raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise RetrieverError(f"invalid training config: {where + ': ' if where else ''}{message}") from None
