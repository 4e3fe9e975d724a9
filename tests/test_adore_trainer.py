"""ADORE on transformers' Trainer (issue 17, item 3): a run killed after a checkpoint and resumed ends where an
uninterrupted run ends, and two processes under torchrun (gloo, CPU) train one query tower."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from retriever.data import load_beir
from retriever.encoders import BiEncoder, EmbeddingCache, TextEncoder, load_sentence_transformer
from retriever.pipeline import build_index
from tests.torchrun import torchrun_train
from training import callbacks
from training.adore import train_adore
from training.config import TrainConfig
from training.run_log import LOG_FILE, read_log


class Crash(RuntimeError):
    pass


@pytest.fixture
def tiny_tower_index(tiny_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> Path:
    """An index of the tiny corpus built with the tiny model (fast to train as the query tower)."""
    model = load_sentence_transformer(str(tiny_model_dir))
    encoder = BiEncoder(TextEncoder(model, str(tiny_model_dir), EmbeddingCache()))
    _, _, path = build_index(load_beir(tiny_dir), encoder, "tiny", root=tmp_path / "indexes", use_gpu=False)
    return path.parent


def _config(index: Path, tiny_dir: Path, tiny_model_dir: Path, output: Path, **fields) -> TrainConfig:
    return TrainConfig(method="adore", index=str(index), data=str(tiny_dir), model=str(tiny_model_dir), batch_size=2,
                       adore_top_k=5, max_steps=6, save_steps=2, learning_rate=1e-3, output=output,
                       query_max_seq_length=32, update_index=False, **fields)


def _losses(output: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_log(output / LOG_FILE) if "loss" in r}


def test_adore_resumes_where_an_uninterrupted_run_goes(tiny_tower_index: Path, tiny_dir: Path, tiny_model_dir: Path,
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = train_adore(_config(tiny_tower_index, tiny_dir, tiny_model_dir, tmp_path / "whole"))
    assert whole["steps"] == 6

    def crash(self, args, state, control, **kwargs):
        if state.global_step == 3:
            raise Crash  # after checkpoint-2, before checkpoint-4: step 3 is lost
    monkeypatch.setattr(callbacks.JsonLogCallback, "on_step_end", crash, raising=False)
    config = _config(tiny_tower_index, tiny_dir, tiny_model_dir, tmp_path / "cut")
    with pytest.raises(Crash):
        train_adore(config)
    checkpoints = tmp_path / "cut" / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*")) == ["checkpoint-2"]
    monkeypatch.undo()
    with pytest.raises(Exception, match="pass --resume"):
        train_adore(config)
    resumed = train_adore(config.model_copy(update={"resume": True}))

    assert resumed["steps"] == 6 and resumed["best_dev_ndcg@10"] == whole["best_dev_ndcg@10"]
    assert resumed["best_step"] == whole["best_step"]
    final = load_file(checkpoints / "checkpoint-6" / "model.safetensors")
    reference = load_file(tmp_path / "whole" / "checkpoints" / "checkpoint-6" / "model.safetensors")
    moved = load_file(tmp_path / "whole" / "checkpoints" / "checkpoint-4" / "model.safetensors")
    assert any(not torch.equal(moved[k], reference[k]) for k in reference)  # steps 5-6 changed the tower
    for name, tensor in reference.items():
        torch.testing.assert_close(final[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
    cut, uncut = _losses(tmp_path / "cut"), _losses(tmp_path / "whole")
    assert sorted(cut) == [1, 2, 3, 4, 5, 6]  # step 3 logged again after the resume
    assert cut == pytest.approx(uncut, rel=1e-4, abs=1e-7)  # same batches, same dropout masks (RNG state)


def test_adore_under_torchrun_writes_one_query_tower(tiny_tower_index: Path, tiny_dir: Path, tiny_model_dir: Path,
                                                     tmp_path: Path) -> None:
    output = tmp_path / "ddp"
    summary = torchrun_train(["--method", "adore", "--index", str(tiny_tower_index), "--data", str(tiny_dir), "--model",
                              str(tiny_model_dir), "--batch-size", "2", "--max-steps", "2", "--adore-top-k", "5",
                              "--query-max-seq-length", "32", "--output", str(output)])
    assert summary["steps"] == 2
    assert (output / "query" / "model.safetensors").is_file() and (output / "towers.json").is_file()
    assert sorted(_losses(output)) == [1, 2]  # one log, written by rank 0
