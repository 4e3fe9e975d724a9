import json
import tempfile
from pathlib import Path

import pytest
import torch

from retriever.encoders import load_sentence_transformer
from retriever.encoders.soft_tokens import add_soft_tokens
from training.config import TrainConfig
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
