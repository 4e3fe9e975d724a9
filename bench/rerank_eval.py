"""The evaluation half of ``bench.rerankers``: first-stage lists (cached per list, query sample and depth),
each reranker's pure and dev-interpolated rows, and the interpolation curve's PNG."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import typer

from bench.common import INDEXES, RUNS, paired_test, sample_test_queries, save_run
from bench.results import ROOT, hardware, load, record
from retriever.atomic import atomic_write_json
from retriever.evaluate import evaluate_run
from retriever.evaluate.plots import new_figure, save_png
from retriever.rerank import load_reranker, rerank_run
from retriever.rerank.caching import CachingReranker
from retriever.rerank.first_stage import FirstStageSpec, first_stage_runs
from retriever.rerank.interpolate import interpolate_runs, pick_weight

logger = logging.getLogger("bench.rerankers")
UNTRAINED = ("random", "none")  # the baseline objectives: no training run behind them


class RandomReranker:
    """Seeded random scores: the nDCG of the first stage's top ``depth`` in a random order."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def score_pairs(self, queries: list[str], documents: list[str]) -> np.ndarray:
        return self.rng.random(len(queries))


def best_trained_index(dataset: str) -> str:
    """The trained retriever of ``dataset`` with the best test nDCG@10 in the results file whose index is here."""
    rows = [r for r in load() if r["dataset"] == dataset and r["split"] == "test" and "auc_global" in r["metrics"]
            and r["method"] not in ("zero-shot", "bm25") and "tau=" not in r["model"]
            and r.get("hardware") == hardware() and (INDEXES / f"{dataset}-{r['method']}").is_dir()]
    if not rows:
        raise typer.BadParameter(f"no trained retriever of {dataset} with an index: train one first")
    return f"{dataset}-{max(rows, key=lambda r: r['metrics']['ndcg@10'])['method']}"


@dataclass(frozen=True)
class EvalSettings:
    depth: int
    max_length: int
    seed: int
    tag: str
    max_queries: int | None
    max_dev_queries: int | None
    backend: str | None
    interpolate: bool
    label_extra: str = ""


def parse_first_stage(text: str, dataset: str) -> FirstStageSpec:
    """An index name under ``indexes/`` (dense), ``best`` (the best trained retriever's index, as earlier
    records' commands say), or a ``dense:`` / ``hybrid:`` spec of a first stage."""
    if text.startswith(("dense:", "hybrid:")):
        return FirstStageSpec.parse(text)
    return FirstStageSpec("dense", INDEXES / (best_trained_index(dataset) if text == "best" else text))


def query_samples(data, settings: EvalSettings) -> dict[str, list[str]]:
    """The test queries (all, or the bench's seeded sample) and, to tune the interpolation, dev queries."""
    samples = {"test": sample_test_queries(data, settings.max_queries, settings.seed)}
    if settings.interpolate:
        dev = sorted(data.qrels("dev"))
        if settings.max_dev_queries and len(dev) > settings.max_dev_queries:
            dev = sorted(np.random.default_rng(settings.seed).choice(dev, settings.max_dev_queries,
                                                                     replace=False).tolist())
        samples["dev"] = dev
    return samples


def _prescore(data, reranker, runs: dict[str, dict], depth: int) -> None:
    """Score the union of the splits' top ``depth`` in one progress bar (the cache serves the rest)."""
    pairs = list(dict.fromkeys((q, d) for run in runs.values()
                               for q, hits in run.items() for d in sorted(hits, key=hits.get, reverse=True)[:depth]))
    doc_ids = list(dict.fromkeys(d for _, d in pairs))
    texts = dict(zip(doc_ids, data.doc_texts(doc_ids), strict=True))
    logger.info("scoring %d distinct (query, document) pairs", len(pairs))
    reranker.score_pairs([data.queries[q] for q, _ in pairs], [texts[d] for _, d in pairs])


def rerank_split(data, run, reranker, depth: int):
    """``rerank_run`` of the top ``depth``, the rest of the list kept below in first-stage order."""
    heads = {d for hits in run.values() for d in sorted(hits, key=hits.get, reverse=True)[:depth]}
    texts = dict(zip(heads, data.doc_texts(list(heads)), strict=True))
    return rerank_run(reranker, {q: data.queries[q] for q in run}, run, texts, depth)


def _metrics(qrels, run, base_run, depth: int, extra: dict) -> dict:
    test = paired_test(qrels, run, base_run)
    base = evaluate_run(qrels, base_run, ("ndcg@10", "mrr@10"))
    return evaluate_run(qrels, run, ("ndcg@10", "mrr@10", "recall@100")) | {
        "p_vs_first_stage": f"{test['p']:.2g}", "delta_vs_first_stage": test["delta"],
        "first_stage_ndcg@10": base["ndcg@10"], "first_stage_mrr@10": base["mrr@10"], "depth": depth,
        "n_queries": len(qrels)} | extra


def evaluate_reranker(data, dataset: str, objective: str, path: str, summary: dict, first_stages: dict[str, dict],
                      short: str, settings: EvalSettings) -> None:
    """The pure rerank row of every first stage and, with ``interpolate``, the dev-tuned interpolated row."""
    inner = RandomReranker(settings.seed) if path == "random" else load_reranker(
        path, max_length=settings.max_length, backend=settings.backend)
    reranker = CachingReranker(inner)
    qrels_test = data.qrels("test")
    trained = {"train_seconds": summary["train_seconds"], "max_length": settings.max_length,
               "backend": getattr(inner, "backend", "none")}
    trained |= {"steps": summary["steps"], "train_groups": summary["groups"]} if "steps" in summary else {}
    short_here = "" if objective == "random" else f"{short}-"
    for label, runs in first_stages.items():  # each list's rows recorded before the next is scored
        _prescore(data, reranker, runs, settings.depth)
        extra = trained | {"pairs_per_s": reranker.pairs_per_s,  # CPU shared with other jobs: a rough figure
                           "ms_per_query": 1000 * settings.depth / max(reranker.pairs_per_s, 1e-9)}
        test_run = runs["test"]
        qrels = {q: qrels_test[q] for q in test_run}
        reranked = rerank_split(data, test_run, reranker, settings.depth)
        name = f"{label}>>{short_here}{objective}"
        if objective not in UNTRAINED:  # the tag and budget describe a training run
            name += (f" [{settings.tag}]" if settings.tag else "") + settings.label_extra
        seconds = reranker.seconds + summary["train_seconds"]
        record(dataset, "test", f"rerank-{short_here}{objective}", name,
               _metrics(qrels, reranked, test_run, settings.depth, extra), seconds)
        save_run(reranked, f"{dataset}-test-rerank-{short_here}{objective}-{label}")
        if not settings.interpolate or objective == "random":
            continue
        dev_reranked = rerank_split(data, runs["dev"], reranker, settings.depth)
        weight, curve = pick_weight(data.qrels("dev"), dev_reranked, runs["dev"], settings.depth)
        mixed = interpolate_runs(reranked, test_run, weight, settings.depth)
        tuned = {"interp_weight": weight, "dev_ndcg@10": curve[weight], "dev_ndcg@10_rerank": curve[1.0],
                 "dev_ndcg@10_first_stage": curve[0.0], "n_dev_queries": len(runs["dev"])}
        record(dataset, "test", f"rerank-{short_here}{objective}-interp", name,
               _metrics(qrels, mixed, test_run, settings.depth, extra | tuned), seconds)
        save_run(mixed, f"{dataset}-test-rerank-{short_here}{objective}-interp-{label}")
        logger.info("%s: interpolation weight %.2f on dev %s", name, weight, {w: round(v, 4) for w, v in curve.items()})
        plot_interpolation(curve, weight, name, ROOT / "docs" / f"rerank_interp_dev_{label}_{settings.tag or 'ce'}.png")


def plot_interpolation(curve: dict[float, float], weight: float, title: str, path: Path) -> None:
    """Dev nDCG@10 against the interpolation weight (0: the first stage, 1: the pure rerank)."""
    fig, ax = new_figure((5.5, 3.5))
    ax.plot(list(curve), list(curve.values()), marker="o", markersize=3)
    ax.axvline(weight, color="grey", linestyle="--", label=f"chosen a = {weight:.2f}")
    ax.set(xlabel="a (weight of the reranker's z-score)", ylabel="dev nDCG@10", title=title)
    ax.title.set_fontsize(8)
    ax.legend()
    save_png(fig, path)


def cached_first_stage(spec: FirstStageSpec, data, samples: dict[str, list[str]], depth: int) -> dict:
    """``first_stage_runs``, kept in ``bench/runs`` per list, query sample and depth (a hybrid list refits its
    adapter and fusion: minutes on a shared CPU)."""
    key = hashlib.sha256(json.dumps([str(spec), samples, depth], sort_keys=True).encode()).hexdigest()[:12]
    path = RUNS / f"first-stage-{spec.label}-{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    runs, _ = first_stage_runs(spec, data, samples, depth=depth)
    atomic_write_json(path, runs)
    return runs


def evaluate_first_stages(data, dataset: str, specs: list[FirstStageSpec], trained: dict, short: str,
                          settings: EvalSettings) -> None:
    samples = query_samples(data, settings)
    first_stages = {}
    for spec in specs:
        first_stages[spec.label] = cached_first_stage(spec, data, samples, max(100, settings.depth))
    for objective, (path, summary) in trained.items():
        evaluate_reranker(data, dataset, objective, path, summary, first_stages, short, settings)
