"""Training configs split per method, the loss / objective / architecture tables, and CLI options generated
from the configs (every field has its flag, with the field's description as help)."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
import torch
import typer
from click.testing import CliRunner
from typer.main import get_command

from retriever.errors import RetrieverError
from training import cli as training_cli
from training.config import (
    METHOD_CONFIGS,
    AdoreConfig,
    FinetuneConfig,
    SoftTokensConfig,
    TrainConfig,
    load_config,
)
from training.losses.base import BatchLoss
from training.losses.registry import LOSSES, LossSpec
from training.rerank_config import RerankerConfig
from training.rerank_objectives import OBJECTIVES


def _command(name: str) -> click.Command:
    app = typer.Typer()
    training_cli.register(app)
    return get_command(app).commands[name]


def _options(command: click.Command) -> dict[str, click.Parameter]:
    return {p.name: p for p in command.params}


@pytest.mark.parametrize(("command", "models"), [("train", list(METHOD_CONFIGS.values())),
                                                 ("train-reranker", [RerankerConfig])])
def test_every_config_field_has_a_flag_with_its_description(command: str, models: list) -> None:
    options = _options(_command(command))
    for model in models:
        for name, field in model.model_fields.items():
            assert name in options, f"{model.__name__}.{name} has no --{name.replace('_', '-')}"
            assert field.description and field.description.split()[0] in (options[name].help or ""), name


def test_the_flags_that_were_missing_exist() -> None:
    train, rerank = _options(_command("train")), _options(_command("train-reranker"))
    assert {"query_max_seq_length", "update_index", "warmup_ratio"} <= set(train)
    assert {"dev_depth", "dev_split", "selection_model", "warmup_ratio"} <= set(rerank)
    assert "--no-update-index" in train["update_index"].secondary_opts
    assert train["learning_rate"].opts == ["--lr", "--learning-rate"]


def test_flags_reach_the_method_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen = {}
    monkeypatch.setattr("training.adore.train_adore", lambda c: seen.setdefault("config", c) and {})
    result = CliRunner().invoke(_command("train"), [
        "--method", "adore", "--index", "idx", "--no-update-index", "--query-max-seq-length", "32",
        "--warmup-ratio", "0.2", "--output", str(tmp_path), "--resume", "--json"])
    assert result.exit_code == 0, result.output
    config = seen["config"]
    assert isinstance(config, AdoreConfig)
    assert (config.update_index, config.query_max_seq_length, config.warmup_ratio, config.resume) == (
        False, 32, 0.2, True)
    assert config.learning_rate == 5e-6  # ADORE's default when --lr is not given


def test_train_config_builds_the_class_of_its_method() -> None:
    assert type(TrainConfig()) is FinetuneConfig
    assert type(TrainConfig(method="soft-tokens", side="both")) is SoftTokensConfig
    adore = TrainConfig(method="adore", index="i", learning_rate=1e-4)
    assert type(adore) is AdoreConfig and adore.learning_rate == 1e-4 and adore.tau == 0.05
    assert TrainConfig(loss="mw").tau == LOSSES["mw"].temperature == 0.01
    assert TrainConfig(loss="mw", temperature=0.2).tau == 0.2


@pytest.mark.parametrize(("fields", "message"), [
    ({"method": "soft-tokens", "loss": "star"}, "--method soft-tokens does not implement --loss star"),
    ({"method": "soft-tokens", "loss": "mnrl"}, "does not implement --loss mnrl"),
    ({"loss": "hinge"}, "unknown loss 'hinge': one of contrastive, mw, mnrl, star"),
    ({"method": "adore", "loss": "mw"}, "not a field of --method adore: loss (finetune/soft-tokens only)"),
    ({"method": "finetune", "soft_tokens": 4}, "soft_tokens (soft-tokens only)"),
    ({"loss": "star"}, "--loss star needs --negatives-file"),
    ({"debias": "cet"}, "--debias cet works with --loss star"),
    ({"method": "sgd"}, "method: one of finetune, adore, soft-tokens"),
    ({"method": "soft-tokens", "objective": "adore", "side": "both"}, "--objective adore needs --side query"),
])
def test_config_rules_refuse_with_one_line(fields: dict, message: str) -> None:
    with pytest.raises(RetrieverError, match="invalid training config") as error:
        load_config(None, fields)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_reranker_tables_refuse_unknown_names() -> None:
    assert set(OBJECTIVES) == {"sft", "cl", "pair"}
    with pytest.raises(ValueError, match="unknown objective 'listnet': one of sft, cl, pair"):
        RerankerConfig(objective="listnet")
    with pytest.raises(ValueError, match="unknown reranker architecture 'colbert'"):
        RerankerConfig(arch="colbert")
    with pytest.raises(ValueError, match="--objective pair"):
        RerankerConfig(objective="cl", debias="cet")
    assert RerankerConfig(arch="causal-lm").start_model == "smollm2"


class HingeLoss(BatchLoss):
    """docs/extending.md's example loss, verbatim."""

    def forward(self, sentence_features, labels):
        scores, positive_column, excluded = self.scores(sentence_features, labels)  # known positives masked
        rows = torch.arange(scores.size(0), device=scores.device)
        losses = torch.relu(self.temperature - (scores[rows, positive_column][:, None] - scores))
        return (losses * ~excluded).sum() / (~excluded).sum().clamp(min=1)


def test_a_new_loss_is_one_file_and_one_table_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from training.trainer import make_loss

    monkeypatch.setitem(LOSSES, "hinge", LossSpec("tests.test_config_cli:HingeLoss", 0.2, "margin ranking"))
    config = TrainConfig(loss="hinge")
    assert config.tau == 0.2
    loss = make_loss(config, torch.nn.Identity(), known=None)
    assert type(loss).__name__ == "HingeLoss" and loss.temperature == 0.2
    # two queries, two positives: s(q0, d0) = 0.9, s(q0, d1) = 0.8, s(q1, d0) = 0.1, s(q1, d1) = 0.5
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    d = torch.tensor([[0.9, 0.1], [0.8, 0.5]])
    features = [{"sentence_embedding": q}, {"sentence_embedding": d}]
    monkeypatch.setattr("training.losses.base.embed", lambda model, f: [x["sentence_embedding"] for x in f])
    monkeypatch.setattr("training.losses.base.nn.functional.normalize", lambda x, dim: x)
    value = loss(features, torch.tensor([0, 1]))
    assert float(value) == pytest.approx((max(0.0, 0.2 - (0.9 - 0.8)) + max(0.0, 0.2 - (0.5 - 0.1))) / 2)


def test_soft_token_objective_reaches_the_trainer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen = {}
    monkeypatch.setattr("training.soft_tokens.train_soft_tokens", lambda c: seen.setdefault("config", c) and {})
    result = CliRunner().invoke(_command("train"), [
        "--method", "soft-tokens", "--objective", "adore", "--soft-layers", "6", "--output", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    assert (seen["config"].objective, seen["config"].soft_layers) == ("adore", 6)
