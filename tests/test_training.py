"""Training runs end to end on the tiny corpus with a tiny model: output, resume after a kill, DDP gather."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training.config import load_config
from training.losses import KnownPositives, MWLoss

CRASH_AFTER_STEP_3 = """
import os, sys
from training import callbacks
def crash(self, args, state, control, **kw):
    if state.global_step == 3:
        os._exit(137)  # as abrupt as kill -9: no cleanup, no final save
callbacks.JsonLogCallback.on_step_end = crash
from retriever.cli import main
sys.argv = ["retriever"] + sys.argv[1:]
main()
"""


def run_train(args: list[str], tmp_path: Path, crash: bool = False) -> subprocess.CompletedProcess:
    env = os.environ | {"RETRIEVER_CACHE_DIR": str(tmp_path / "cache")}
    head = [sys.executable, "-c", CRASH_AFTER_STEP_3] if crash else [sys.executable, "-m", "retriever"]
    return subprocess.run(head + ["train", *args], capture_output=True, text=True, env=env, timeout=600)


def test_train_kill_and_resume(tiny_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["--data", str(tiny_dir), "--model", str(tiny_model_dir), "--batch-size", "2", "--max-steps", "6",
            "--save-steps", "2", "--eval-steps", "3", "--dev-corpus-size", "3", "--loss", "mw", "--output", str(out),
            "--max-seq-length", "32"]
    crashed = run_train(args, tmp_path, crash=True)
    assert crashed.returncode == 137, crashed.stderr[-2000:]
    assert (out / "checkpoints" / "checkpoint-2").is_dir() and not (out / "train_summary.json").exists()

    again = run_train(args, tmp_path)
    assert again.returncode == 2 and "pass --resume" in again.stderr

    resumed = run_train([*args, "--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 6
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    loss_steps = [r["step"] for r in logged if "loss" in r]
    assert loss_steps == [1, 2, 3, 4, 5, 6]  # step 3 was lost in the crash and redone once after resume
    assert any("eval_dev_cosine_ndcg@10" in r for r in logged)
    assert (out / "training_curve.png").read_bytes()[:4] == b"\x89PNG"
    # dev evaluation is announced, and the run says where its log and curve are (issue 22, item 16)
    assert "dev evaluation (" in resumed.stderr
    assert f"log: {(out / 'log.jsonl').resolve()}" in resumed.stdout
    assert f"training_curve: {(out / 'training_curve.png').resolve()}" in resumed.stdout

    from sentence_transformers import SentenceTransformer

    assert SentenceTransformer(str(out), device="cpu").encode(["x"]).shape == (1, 32)


def test_config_file_and_overrides(tmp_path: Path) -> None:
    from retriever.errors import RetrieverError

    path = tmp_path / "c.yaml"
    path.write_text("loss: mw\nbatch_size: 16\nlearning_rate: 3.0e-5\n")
    config = load_config(path, {"batch_size": 8, "seed": None})
    assert (config.loss, config.batch_size, config.learning_rate, config.tau) == ("mw", 8, 3e-5, 0.01)
    path.write_text("loss: hinge\n")
    with pytest.raises(RetrieverError, match="loss"):
        load_config(path, {})
    path.write_text("batchsize: 3\n")
    with pytest.raises(RetrieverError, match="batchsize"):
        load_config(path, {})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


QRELS = {"q0": {"d0": 1, "d2": 1}, "q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 1}}
ROWS = [(f"q{i}", [f"d{i}"]) for i in range(4)]
ANCHORS = ["alpha query", "beta question", "gamma ask", "delta search"]
DOCS = ["alpha document text", "beta passage", "gamma abstract words", "delta page"]


def _mw_rank(rank: int, port: int, model_dir: str, out_dir: str) -> None:
    import torch.distributed as dist
    from sentence_transformers import SentenceTransformer

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    model = SentenceTransformer(model_dir, device="cpu")
    loss = MWLoss(model, known=KnownPositives(QRELS, ROWS), temperature=0.1, gather_across_devices=True)
    part = slice(2 * rank, 2 * rank + 2)
    value = loss([model.tokenize(ANCHORS[part]), model.tokenize(DOCS[part])], torch.arange(4)[part])
    value.backward()
    grad = model[0].auto_model.embeddings.word_embeddings.weight.grad
    torch.save({"loss": value.detach(), "grad": grad}, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


def test_mw_gathers_negatives_across_processes(tiny_model_dir: Path, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    torch.multiprocessing.spawn(_mw_rank, args=(_free_port(), str(tiny_model_dir), str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    loss = MWLoss(model, known=KnownPositives(QRELS, ROWS), temperature=0.1)
    single = loss([model.tokenize(ANCHORS), model.tokenize(DOCS)], torch.arange(4))
    single.backward()
    grad = model[0].auto_model.embeddings.word_embeddings.weight.grad
    # DDP averages the per-process losses' gradients: that must equal one process on the global batch.
    assert (ranks[0]["loss"] + ranks[1]["loss"]).item() / 2 == pytest.approx(single.item(), rel=1e-5)
    torch.testing.assert_close((ranks[0]["grad"] + ranks[1]["grad"]) / 2, grad, rtol=1e-4, atol=1e-7)


def test_torchrun_two_cpu_processes(tiny_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    env = os.environ | {"RETRIEVER_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", "-m", "retriever", "train", "--data", str(tiny_dir), "--model",
         str(tiny_model_dir), "--batch-size", "2", "--max-steps", "2", "--loss", "mw", "--output",
         str(tmp_path / "ddp"), "--dev-corpus-size", "3", "--max-seq-length", "32", "--json"],
        capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("\"output\"") == 1  # one report, from rank 0
    assert json.loads(result.stdout[result.stdout.rindex("{\n"):])["steps"] == 2
    assert (tmp_path / "ddp" / "model.safetensors").is_file()


def test_half_precision_checkpoint_trains_in_float32(tiny_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    """A checkpoint stored in fp16 (as on the GPU machine) must train with float32 master weights: updates of
    lr 2e-5 vanish in fp16 and the embeddings collapse."""
    from sentence_transformers import SentenceTransformer

    from training.config import TrainConfig
    from training.trainer import train

    half = tmp_path / "half"
    SentenceTransformer(str(tiny_model_dir), device="cpu").half().save(str(half))
    out = tmp_path / "run"
    train(TrainConfig(data=str(tiny_dir), model=str(half), batch_size=2, max_steps=1, output=out, max_seq_length=32,
                      dev_corpus_size=3, early_stopping_patience=None))
    trained = SentenceTransformer(str(out), device="cpu")
    assert {p.dtype for p in trained.parameters()} == {torch.float32}


def test_one_row_per_query_samples_positives_by_grade() -> None:
    from training.examples import sample_query_pairs

    qrels = {"q1": {"a": 2, "b": 1}, "q2": {"c": 1, "d": 0}, "q3": {"e": 0}}
    draws = [sample_query_pairs(qrels, seed) for seed in range(600)]
    assert all([q for q, _ in pairs] == ["q1", "q2"] for pairs in draws)  # one row per query with a positive
    assert all(dict(pairs)["q2"] == "c" for pairs in draws)  # a grade-0 document is never a positive
    share_a = sum(dict(pairs)["q1"] == "a" for pairs in draws) / len(draws)
    assert abs(share_a - 2 / 3) < 0.06  # drawn in proportion to the grade
    assert sample_query_pairs(qrels, 3) == sample_query_pairs(qrels, 3)


def test_epoch_blocks_visit_each_epoch_in_turn() -> None:
    """rows=query for the finetune trainer: epoch e's draw is visited whole before epoch e+1's, with no
    text twice in a batch, and the same seed replays the same batches (resume)."""
    from datasets import Dataset

    from training.epoch_blocks import EpochBlocksBatchSampler

    queries = [f"q{i}" for i in range(10)]
    data = Dataset.from_dict({"anchor": queries * 3, "positive": [f"{q}-d{e}" for e in range(3) for q in queries],
                              "label": list(range(30))})
    sampler = EpochBlocksBatchSampler(data, batch_size=4, drop_last=False, seed=7, block=10)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 9
    seen = [i for batch in batches for i in batch]
    assert sorted(seen) == list(range(30))
    assert [i // 10 for i in seen] == sorted(i // 10 for i in seen)  # block by block
    assert all(len({data[i]["anchor"] for i in batch}) == len(batch) for batch in batches)
    assert batches == list(EpochBlocksBatchSampler(data, batch_size=4, drop_last=False, seed=7, block=10))
    assert [sorted(b) for b in batches[:3]] != [sorted(b) for b in batches[3:6]]  # blocks shuffled apart
    with pytest.raises(ValueError, match="blocks of 7"):
        EpochBlocksBatchSampler(data, batch_size=4, drop_last=False, block=7)


def test_finetune_one_row_per_query_per_epoch(tiny_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    from retriever.data import load_beir
    from training.config import TrainConfig
    from training.examples import epoch_blocks
    from training.trainer import train

    config = TrainConfig(data=str(tiny_dir), model=str(tiny_model_dir), batch_size=2, epochs=2, rows="query",
                         output=tmp_path / "run", max_seq_length=32, dev_corpus_size=3, early_stopping_patience=None)
    data = load_beir(tiny_dir)
    rows, block = epoch_blocks(data, config, None, 2)
    train_queries = [q for q, docs in data.qrels("train").items() if any(r > 0 for r in docs.values())]
    assert block == len(train_queries) and len(rows) == 2 * block
    assert [q for q, _ in rows.ids[:block]] == [q for q, _ in rows.ids[block:]]  # every query once per epoch
    result = train(config)
    assert result.steps == 2 * -(-block // 2)
    assert json.loads((tmp_path / "run" / "train_summary.json").read_text())["rows"] == block
    with pytest.raises(ValueError, match="max-pairs"):
        TrainConfig(data=str(tiny_dir), rows="query", max_pairs=3)
