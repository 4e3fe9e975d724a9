import json
import tempfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from retriever.encoders import load_sentence_transformer
from retriever.encoders.soft_tokens import add_soft_tokens
from tests.torchrun import torchrun_train
from training import callbacks
from training.config import TrainConfig
from training.run_log import LOG_FILE, read_log
from training.soft_tokens import train_soft_tokens, trainable_parameters

TEXTS = ["what causes malaria in children", "statins reduce cardiovascular risk in older adults", "a b"]


@pytest.mark.parametrize("k", [1, 16])
def test_untrained_soft_tokens_are_the_base_model(minilm, k: int) -> None:
    base = minilm.encode(TEXTS, convert_to_tensor=True, normalize_embeddings=True)
    soft = add_soft_tokens(load_sentence_transformer("default", device="cpu"), soft_tokens=k, soft_layers=1)
    cosines = (soft.encode(TEXTS, convert_to_tensor=True, normalize_embeddings=True) * base).sum(-1)
    assert cosines.min() >= 0.999
    with torch.no_grad():
        soft[0].gates.fill_(1.0)  # opened gates: the tokens act
    moved = (soft.encode(TEXTS, convert_to_tensor=True, normalize_embeddings=True) * base).sum(-1)
    assert moved.max() < 0.999


def test_deep_prompts_start_at_their_layer_hidden_state_scale(tiny_model_dir: Path) -> None:
    model = add_soft_tokens(load_sentence_transformer(str(tiny_model_dir)), soft_tokens=3, soft_layers=2)
    assert trainable_parameters(model) == 2 * 3 * 32 + 2 * 2  # prompts [layers, K, hidden] + gates [layers, heads]
    backbone = model[0].model
    features = model[0].tokenizer(["the of and a to in is"], return_tensors="pt")
    with torch.no_grad():
        hidden = backbone(**features, output_hidden_states=True).hidden_states
    for layer in range(2):
        expected = hidden[layer][0].norm(dim=-1).mean()
        got = model[0].prompts[layer].norm(dim=-1).mean()
        assert 0.5 * expected < got < 2.0 * expected, (layer, float(got), float(expected))
    assert torch.equal(model[0].gates, torch.zeros(2, 2))


def test_frozen_backbone_stays_in_eval_mode(tiny_model_dir: Path) -> None:
    model = add_soft_tokens(load_sentence_transformer(str(tiny_model_dir)), soft_tokens=2, soft_layers=2)
    model.train()
    assert not model[0].model.training
    features = dict(model.tokenize(["dropout would make these differ"]))
    with torch.no_grad():
        model[0].gates.fill_(0.3)
        first = model(dict(features))["sentence_embedding"]
        second = model(dict(features))["sentence_embedding"]
    torch.testing.assert_close(first, second, atol=0, rtol=0)


def test_training_moves_only_soft_tokens_and_round_trips(tiny_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    backbone = {k: v.clone() for k, v in load_sentence_transformer(str(tiny_model_dir)).state_dict().items()}
    config = TrainConfig(method="soft-tokens", data=str(tiny_dir), model=str(tiny_model_dir), batch_size=3,
                         epochs=2, learning_rate=5e-2, soft_tokens=2, soft_layers=2, side="both",
                         output=tmp_path / "soft", max_seq_length=32, dev_corpus_size=5)
    summary = train_soft_tokens(config)
    assert summary["trainable_params"] == 2 * 2 * 32 + 2 * 2
    assert summary["tau"] == 0.07  # SoftREPA's fixed temperature
    trained = load_sentence_transformer(str(tmp_path / "soft"))
    state = trained.state_dict()
    for name, tensor in backbone.items():
        assert torch.equal(state[name], tensor), name  # the backbone is bit-identical
    log = [json.loads(line) for line in (tmp_path / "soft" / "log.jsonl").read_text().splitlines()]
    assert log[0] == {"step": 0, "epoch": 0, "eval_dev_ndcg@10": summary["zero_shot_dev_ndcg@10"]}
    assert [r for r in log if "loss" in r][-1]["mean_abs_gate"] > 0  # training opened the gates
    assert bool(trained[0].gates.abs().sum() > 0) == (summary["best_epoch"] > 0)  # the best epoch is kept
    with tempfile.TemporaryDirectory() as tmp:
        trained.save(tmp)
        again = load_sentence_transformer(tmp)
        torch.testing.assert_close(again.encode(["x y"], convert_to_tensor=True),
                                   trained.encode(["x y"], convert_to_tensor=True))


def test_adore_objective_trains_query_soft_tokens_only(tiny_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    backbone = {k: v.clone() for k, v in load_sentence_transformer(str(tiny_model_dir)).state_dict().items()}
    config = TrainConfig(method="soft-tokens", data=str(tiny_dir), model=str(tiny_model_dir), batch_size=3,
                         epochs=2, learning_rate=5e-2, soft_tokens=2, soft_layers=2, side="query", rows="query",
                         adore_top_k=3, output=tmp_path / "soft", max_seq_length=32)
    summary = train_soft_tokens(config, objective="adore")
    assert summary["loss"] == "adore" and summary["tau"] == 0.05  # ADORE's tau, not SoftREPA's 0.07
    log = [json.loads(line) for line in (tmp_path / "soft" / "log.jsonl").read_text().splitlines()]
    assert [r for r in log if "loss" in r][-1]["mean_abs_gate"] > 0  # the gates opened
    state = load_sentence_transformer(str(tmp_path / "soft" / "query")).state_dict()
    for name, tensor in backbone.items():
        assert torch.equal(state[name], tensor), name
    with pytest.raises(ValueError, match="side query"):
        train_soft_tokens(config.model_copy(update={"side": "both"}), objective="adore")
    budgeted = train_soft_tokens(config.model_copy(update={"output": tmp_path / "budget"}), "adore", time_budget_s=1e-9)
    assert budgeted["epochs_run"] == 1 and summary["epochs_run"] == 2  # the budget ends training after epoch 1


def _losses(output: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_log(output / LOG_FILE) if "loss" in r}


def test_soft_tokens_resume_where_an_uninterrupted_run_goes(tiny_dir: Path, tiny_model_dir: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """One row per query, redrawn every epoch (2 steps each): killed at step 3, resumed from checkpoint-2,
    the run redraws epoch 1's rows and ends with the uninterrupted run's soft tokens."""
    def config(output: Path) -> TrainConfig:
        return TrainConfig(method="soft-tokens", data=str(tiny_dir), model=str(tiny_model_dir), batch_size=3,
                           epochs=3, max_steps=6, save_steps=2, learning_rate=5e-2, soft_tokens=2, soft_layers=2,
                           side="query", rows="query", output=output, max_seq_length=32, early_stopping_patience=None)
    whole = train_soft_tokens(config(tmp_path / "whole"))

    def crash(self, args, state, control, **kwargs):
        if state.global_step == 3:
            raise RuntimeError("killed")
    monkeypatch.setattr(callbacks.JsonLogCallback, "on_step_end", crash, raising=False)
    with pytest.raises(RuntimeError, match="killed"):
        train_soft_tokens(config(tmp_path / "cut"))
    monkeypatch.undo()
    resumed = train_soft_tokens(config(tmp_path / "cut").model_copy(update={"resume": True}))

    assert resumed["steps"] == whole["steps"] == 6 and resumed["best_epoch"] == whole["best_epoch"]
    final, reference = (load_file(tmp_path / run / "checkpoints" / "checkpoint-6" / "model.safetensors")
                        for run in ("cut", "whole"))
    assert float(reference["0.gates"].abs().sum()) > 0  # training opened the gates
    for name in ("0.prompts", "0.gates"):
        torch.testing.assert_close(final[name], reference[name], rtol=1e-5, atol=1e-7)
    cut, uncut = _losses(tmp_path / "cut"), _losses(tmp_path / "whole")
    assert sorted(cut) == [1, 2, 3, 4, 5, 6] and cut == pytest.approx(uncut, rel=1e-5)


def test_soft_tokens_under_torchrun_write_one_query_tower(tiny_dir: Path, tiny_model_dir: Path,
                                                          tmp_path: Path) -> None:
    output = tmp_path / "ddp"
    summary = torchrun_train(["--method", "soft-tokens", "--side", "query", "--soft-tokens", "2", "--data",
                              str(tiny_dir), "--model", str(tiny_model_dir), "--batch-size", "2", "--max-steps", "2",
                              "--max-seq-length", "32", "--output", str(output)])
    assert summary["steps"] == 2
    assert (output / "query" / "soft_tokens.safetensors").is_file() and (output / "towers.json").is_file()
    assert sorted(_losses(output)) == [1, 2]  # one log, written by rank 0
