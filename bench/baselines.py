"""BM25 and zero-shot dense baselines on BEIR test splits.

    python -m bench.baselines --dataset scifact --dataset nfcorpus
"""

from __future__ import annotations

import logging
import time

import typer

from bench.results import ROOT, record, write_significance
from retriever.bm25 import Bm25Retriever
from retriever.data import load_dataset
from retriever.encoders import BiEncoder
from retriever.evaluate import evaluate_run, plot_roc, retrieval_auc, write_trec_run
from retriever.pipeline import build_index, evaluate_index

RUNS = ROOT / "bench" / "runs"
logger = logging.getLogger("bench.baselines")


def run_dataset(name: str, split: str, model: str) -> None:
    dataset = load_dataset(name)
    qrels = dataset.qrels(split)
    queries = dataset.split_queries(split)

    start = time.perf_counter()
    bm25 = Bm25Retriever(dataset)
    bm25_run = bm25.search(queries, k=1000)
    bm25_metrics = evaluate_run(qrels, bm25_run)
    bm25_auc = retrieval_auc(qrels, bm25_run, bm25.pair_scores(queries, qrels))
    bm25_metrics |= {"auc_global": bm25_auc.auc_global, "auc_per_query": bm25_auc.auc_per_query}
    record(name, split, "bm25", "bm25s", bm25_metrics, time.perf_counter() - start)
    write_trec_run(bm25_run, RUNS / f"{name}-{split}-bm25.trec", tag="bm25")

    start = time.perf_counter()
    encoder = BiEncoder.load(model, show_progress=True)
    index, manifest, _ = build_index(dataset, encoder, f"{name}-zero-shot", root=ROOT / "indexes")
    report = evaluate_index(index, encoder, dataset, split=split, k=1000)
    record(name, split, "zero-shot", manifest.model_id, report.metrics, time.perf_counter() - start)
    write_trec_run(report.run, RUNS / f"{name}-{split}-zero-shot.trec", tag="zero-shot")

    plot_roc({"bm25": (bm25_auc.labels, bm25_auc.scores), "zero-shot": (report.auc.labels, report.auc.scores)},
             ROOT / "docs" / f"roc_{name}_{split}_baselines.png", title=f"{name} {split}: AUC protocol")
    write_significance(name, split, "baselines", qrels, {"bm25": bm25_run, "zero-shot": report.run})


def main(
    dataset: list[str] = typer.Option(["scifact", "nfcorpus"], help="Datasets to run."),
    split: str = typer.Option("test"),
    model: str = typer.Option("default"),
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for name in dataset:
        run_dataset(name, split, model)


if __name__ == "__main__":
    typer.run(main)
