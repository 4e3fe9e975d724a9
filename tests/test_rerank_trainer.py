"""The reranker loop on transformers' Trainer (issue 17, item 3): a run killed after a checkpoint and resumed
ends where an uninterrupted run ends (parameters, losses; CET's selection model too), and two processes under
torchrun (gloo, CPU) train one reranker with one log (CET too: its selection model steps on gradients averaged
over the processes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from retriever.errors import RetrieverError
from tests import test_adore_trainer
from tests.interrupted import assert_same_run, crash_then_resume, logged_losses
from tests.live_server import free_port
from tests.test_rerankers import make_tiny_causal_lm
from tests.torchrun import torchrun_train
from training.negatives import NegativesFile
from training.rerank_config import RerankerConfig
from training.rerank_step import average_gradients
from training.rerank_trainer import train_reranker
from training.run_log import LOG_FILE, read_log

RUNS = {"ce-cl": {"objective": "cl"}, "ce-cet": {"objective": "pair", "debias": "cet"},
        "lm-sft": {"arch": "causal-lm", "objective": "sft", "max_length": 200}}


tiny_tower_index = test_adore_trainer.tiny_tower_index  # the tiny corpus indexed with the tiny model


@pytest.fixture
def negatives(tmp_path: Path) -> Path:
    queries = ("q1", "q2", "q3", "q4", "q5", "q6")
    mined = NegativesFile("tiny", "train", "x", "y", None, {}, {q: [f"d{i}" for i in range(1, 13)] for q in queries})
    return mined.save(tmp_path / "negatives.json")


def _config(name: str, model: Path, tiny_dir: Path, negatives: Path, output: Path) -> RerankerConfig:
    # 8 training groups, 2 a step: 4 steps an epoch, so the 6 steps cross an epoch boundary
    fields = dict(model=str(model), data=str(tiny_dir), negatives_file=negatives, n_hard=2, n_easy=1, batch_size=2,
                  max_length=32, max_steps=6, save_steps=2, learning_rate=1e-3, head_learning_rate=5e-3,
                  output=output)
    return RerankerConfig(**(fields | RUNS[name]))


def _assert_same_weights(a: Path, b: Path) -> None:
    first, second = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert sorted(first) == sorted(second)
    for name, tensor in second.items():
        torch.testing.assert_close(first[name], tensor, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("name", list(RUNS))
def test_reranker_resumes_where_an_uninterrupted_run_goes(name: str, tiny_dir: Path, tiny_model_dir: Path,
                                                          negatives: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    model = make_tiny_causal_lm(tmp_path / "lm") if name.startswith("lm") else tiny_model_dir.parent / "hf"
    whole = train_reranker(_config(name, model, tiny_dir, negatives, tmp_path / "whole"))
    assert whole["steps"] == 6

    config = _config(name, model, tiny_dir, negatives, tmp_path / "cut")
    resumed = crash_then_resume(train_reranker, config, monkeypatch)  # step 3 is lost, checkpoint-2 resumed
    assert resumed["steps"] == 6
    reference = tmp_path / "whole" / "checkpoints"
    moved, last = load_file(reference / "checkpoint-4" / "model.safetensors"), load_file(tmp_path / "whole" /
                                                                                       "model.safetensors")
    assert any(not torch.equal(moved[k], last[k]) for k in last)  # steps 5-6 changed the reranker
    assert_same_run(tmp_path / "cut", tmp_path / "whole", steps=6)
    _assert_same_weights(tmp_path / "cut", tmp_path / "whole")  # the exported reranker: the last weights
    if "debias" in RUNS[name]:
        _assert_same_weights(tmp_path / "cut" / "selection", tmp_path / "whole" / "selection")


@pytest.mark.parametrize("arch", ["cross-encoder", "causal-lm"])
def test_reranker_under_torchrun_writes_one_model(arch: str, tiny_dir: Path, tiny_model_dir: Path, negatives: Path,
                                                  tmp_path: Path) -> None:
    model = make_tiny_causal_lm(tmp_path / "lm") if arch == "causal-lm" else tiny_model_dir.parent / "hf"
    output = tmp_path / "ddp"
    summary = torchrun_train(["--arch", arch, "--model", str(model), "--data", str(tiny_dir), "--negatives-file",
                              str(negatives), "--n-hard", "2", "--n-easy", "1", "--batch-size", "2", "--max-length",
                              "200" if arch == "causal-lm" else "32", "--max-steps", "2", "--output", str(output)],
                             command="train-reranker")
    assert summary["steps"] == 2 and summary["pairs_per_step"] == 2 * 2 * 4  # two processes of 2 groups of 4
    assert (output / "model.safetensors").is_file() and (output / "reranker.json").is_file()
    assert sorted(logged_losses(output)) == [1, 2]  # one log, written by rank 0
    assert (output / "training_curve.png").is_file()


def test_reranker_dev_evaluation_keeps_the_best_and_stops_early(tiny_tower_index: Path, tiny_dir: Path,
                                                                tiny_model_dir: Path, negatives: Path,
                                                                tmp_path: Path) -> None:
    output = tmp_path / "dev"
    config = _config("ce-cl", tiny_model_dir.parent / "hf", tiny_dir, negatives, output).model_copy(update={
        "objective": "sft", "max_steps": 12, "dev_index": str(tiny_tower_index), "dev_split": "test",
        "dev_depth": 10, "eval_steps": 1, "early_stopping_patience": 1})
    summary = train_reranker(config)
    dev = {r["step"]: r["eval_dev_ndcg@10"] for r in read_log(output / LOG_FILE) if "eval_dev_ndcg@10" in r}
    assert sorted(dev) == list(range(1, summary["steps"] + 1))  # one evaluation a step, none at step 0
    values = list(dev.values())
    first_drop = next(i for i in range(1, len(values)) if values[i] <= max(values[:i]))
    assert summary["steps"] == first_drop + 1  # patience 1: the first evaluation without improvement stops
    assert summary["best_dev_ndcg@10"] == max(values)
    _assert_same_weights(output, output / "checkpoints" / "best")  # the best dev model is the exported one
    assert (output / "training_curve.png").is_file() and (output / "gradient_weights.png").is_file()


def test_former_loop_checkpoints_are_refused_not_overwritten(tiny_dir: Path, tiny_model_dir: Path, negatives: Path,
                                                            tmp_path: Path) -> None:
    output = tmp_path / "old-run"
    (output / "checkpoints" / "step-40").mkdir(parents=True)
    (output / LOG_FILE).write_text('{"step": 40, "loss": 0.5}\n')
    for resume in (False, True):
        config = _config("ce-cl", tiny_model_dir.parent / "hf", tiny_dir, negatives, output)
        with pytest.raises(RetrieverError, match="former reranker loop .step-40.*another --output"):
            train_reranker(config.model_copy(update={"resume": resume}))
    assert (output / LOG_FILE).read_text() == '{"step": 40, "loss": 0.5}\n'  # nothing was touched


def test_cet_under_torchrun_keeps_one_selection_model(tiny_dir: Path, tiny_model_dir: Path, negatives: Path,
                                                      tmp_path: Path) -> None:
    output = tmp_path / "ddp-cet"
    summary = torchrun_train(["--model", str(tiny_model_dir.parent / "hf"), "--data", str(tiny_dir),
                              "--negatives-file", str(negatives), "--objective", "pair", "--debias", "cet",
                              "--n-hard", "2", "--n-easy", "1", "--batch-size", "2", "--max-length", "32",
                              "--max-steps", "2", "--save-steps", "1", "--output", str(output)],
                             command="train-reranker")
    assert summary["steps"] == 2
    assert sorted(logged_losses(output)) == [1, 2]
    saved = [load_file(output / "checkpoints" / f"checkpoint-{s}" / "selection" / "model.safetensors") for s in (1, 2)]
    assert any(not torch.equal(saved[0][k], saved[1][k]) for k in saved[1])  # S stepped (on the averaged gradient)
    assert (output / "selection" / "model.safetensors").is_file()


def _average_on_rank(rank: int, port: int, results) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    module = torch.nn.Linear(3, 2)
    for p in module.parameters():
        p.grad = torch.full_like(p, float(rank + 1))
    average_gradients(module)
    results[rank] = [p.grad.clone() for p in module.parameters()]
    dist.destroy_process_group()


def test_selection_gradients_are_averaged_over_processes() -> None:
    port = free_port()
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_average_on_rank, args=(port, results), nprocs=2, join=True)
        for rank in (0, 1):  # (1 + 2) / 2 on both processes
            assert all(torch.equal(g, torch.full_like(g, 1.5)) for g in results[rank])
