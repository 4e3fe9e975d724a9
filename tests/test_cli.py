import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def cli(*args: str, env_dir: Path) -> subprocess.CompletedProcess:
    import os

    env = os.environ | {"RETRIEVER_INDEX_DIR": str(env_dir / "indexes"), "RETRIEVER_CACHE_DIR": str(env_dir / "c"),
                        "RETRIEVER_DATA_PATH": str(env_dir / "nodata")}
    return subprocess.run([sys.executable, "-m", "retriever", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_build_search_eval_and_json(tiny_dir: Path, tmp_path: Path) -> None:
    built = cli("index", "build", "--data", str(tiny_dir), "--name", "tiny", "--json", env_dir=tmp_path)
    assert built.returncode == 0, built.stderr
    info = json.loads(built.stdout)
    assert info["count"] == 12 and info["dimension"] == 384 and info["data_source"]["dataset"] == "tiny"

    found = cli("search", "--index", "tiny", "-k", "3", "--json", "what causes earthquakes", env_dir=tmp_path)
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)[0]["hits"]
    assert hits[0]["id"] == "d5" and hits[0]["title"] == "Plate tectonics" and len(hits) == 3
    assert json.loads(found.stdout)[0]["calibrated"] is False and hits[0]["relevance"] is None

    evaluated = cli("eval", "--index", "tiny", "--data", str(tiny_dir), "--split", "test", "--json",
                    "--run-file", str(tmp_path / "run.trec"), "--roc", str(tmp_path / "roc.png"), env_dir=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    metrics = json.loads(evaluated.stdout)["metrics"]
    assert set(metrics) >= {"ndcg@10", "mrr@10", "recall@100", "map@100", "auc_global", "auc_per_query"}
    assert metrics["recall@100"] == 1.0
    assert (tmp_path / "roc.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "run.trec").read_text().count("\n") == 4 * 12

    shown = cli("search", "--index", "tiny", "-k", "2", "plate tectonics", env_dir=tmp_path)  # for people
    assert shown.returncode == 0, shown.stderr
    assert "calibrated probability" in shown.stdout and "only within one query" in shown.stdout

    other = tmp_path / "other"  # a dataset the index was not built from
    shutil.copytree(tiny_dir, other)
    with open(other / "corpus.jsonl", "a") as corpus:
        corpus.write(json.dumps({"_id": "d13", "title": "Extra", "text": "Another corpus."}) + "\n")
    for command in (("eval",), ("calibrate", "--no-save"), ("mine", "--output", str(tmp_path / "n.json"))):
        refused = cli(*command, "--index", "tiny", "--data", str(other), env_dir=tmp_path)
        assert refused.returncode == 2, refused.stderr
        last = refused.stderr.strip().splitlines()[-1]
        assert last.startswith("error: index 'tiny' was built from dataset 'tiny'") and "--force" in last


def test_help_and_data_info(tiny_dir: Path, tmp_path: Path) -> None:
    shown = cli("eval", "--help", env_dir=tmp_path)
    assert shown.returncode == 0 and "``" not in shown.stdout and "--rerank-depth" in shown.stdout
    info = cli("data", "info", str(tiny_dir), env_dir=tmp_path)
    assert info.returncode == 0 and "tiny: 12 documents, 10 queries" in info.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("eval", "--index", "nope", "--data", "x"), "unknown dataset 'x'"),
        (("search", "--index", "missing", "hello"), "no index 'missing'"),
        (("index", "build", "--data", "/no/such/folder", "--name", "x"), "does not exist"),
        (("search", "--index", "missing", "   "), "query 1 is empty or blank"),
        (("search", "--index", "missing", "ok", ""), "query 2 is empty or blank"),
        (("search", "--index", "missing", "x" * 100_000), "100000 characters, over the limit of 2048"),
        (("rerank", "--index", "missing", "--reranker", "r", "x" * 2049), "over the limit of 2048"),
    ],
)
def test_bad_arguments_get_one_line_and_nonzero_exit(tmp_path: Path, args, message) -> None:
    result = cli(*args, env_dir=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last


def test_model_mismatch_is_refused(tiny_dir: Path, tmp_path: Path, minilm) -> None:
    assert cli("index", "build", "--data", str(tiny_dir), "--name", "tiny", env_dir=tmp_path).returncode == 0
    other = tmp_path / "other-model"
    import torch

    with torch.no_grad():
        minilm[0].auto_model.embeddings.word_embeddings.weight[0, 0] += 1
    try:
        minilm.save(str(other))
    finally:
        with torch.no_grad():
            minilm[0].auto_model.embeddings.word_embeddings.weight[0, 0] -= 1
    result = cli("search", "--index", "tiny", "--model", str(other), "hello", env_dir=tmp_path)
    assert result.returncode == 2 and "was built with model" in result.stderr.strip().splitlines()[-1]


def test_train_reranker_then_rerank_and_eval(tiny_dir: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    assert cli("index", "build", "--data", str(tiny_dir), "--name", "tiny", env_dir=tmp_path).returncode == 0
    negatives = tmp_path / "negs.json"
    mined = cli("mine", "--index", "tiny", "--data", str(tiny_dir), "--output", str(negatives), env_dir=tmp_path)
    assert mined.returncode == 0, mined.stderr
    trained = cli("train-reranker", "--model", str(tiny_model_dir.parent / "hf"), "--data", str(tiny_dir),
                  "--negatives-file", str(negatives), "--n-hard", "2", "--n-easy", "1", "--batch-size", "2",
                  "--max-steps", "1", "--max-length", "32", "--output", str(tmp_path / "ce"), "--json",
                  env_dir=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout)["steps"] == 1

    reranked = cli("rerank", "--index", "tiny", "--reranker", str(tmp_path / "ce"), "--depth", "5", "-k", "3",
                   "--json", "what causes earthquakes", env_dir=tmp_path)
    assert reranked.returncode == 0, reranked.stderr
    hits = json.loads(reranked.stdout)[0]["hits"]
    assert len(hits) == 3 and len({h["id"] for h in hits}) == 3

    evaluated = cli("eval", "--index", "tiny", "--data", str(tiny_dir), "--rerank", str(tmp_path / "ce"),
                    "--rerank-depth", "5", "--json", env_dir=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert {"ndcg@10", "mrr@10", "ms_per_query"} <= set(json.loads(evaluated.stdout)["reranked"])

    again = cli("train-reranker", "--model", str(tiny_model_dir.parent / "hf"), "--data", str(tiny_dir),
                "--negatives-file", str(negatives), "--output", str(tmp_path / "ce"), env_dir=tmp_path)
    assert again.returncode == 2 and "--resume" in again.stderr  # never silently overwrites a run
    bad = cli("train-reranker", "--objective", "cl", "--debias", "cet", "--negatives-file", str(negatives),
              env_dir=tmp_path)
    assert bad.returncode == 2 and "objective pair" in bad.stderr
