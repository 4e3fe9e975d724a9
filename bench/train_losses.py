"""Issue 3 experiment: zero-shot vs MNRL vs our contrastive loss vs the MW loss, same hyperparameters.

    python -m bench.train_losses --dataset scifact
    python -m bench.train_losses --dataset scifact --loss mnrl --epochs 3 --min-epochs 3 --patience 2
    python -m bench.train_losses --dataset nfcorpus --loss mnrl --epochs 3 --min-epochs 3 --rows query

Trained models go to ``models/<dataset>-<loss>/`` (not committed); a finished run is reused on re-run.
Every trained row carries a paired t-test on nDCG@10 against zero-shot (``p_vs_zero_shot``).
"""

from __future__ import annotations

import json
import logging
import time

import typer

from bench.common import paired_test, rows_label
from bench.results import ROOT, record, write_significance
from retriever.data import load_dataset
from retriever.encoders import BiEncoder
from retriever.evaluate import plot_roc, write_trec_run
from retriever.pipeline import build_index, evaluate_index
from training.config import TrainConfig
from training.trainer import train

logger = logging.getLogger("bench.train_losses")


def _loss_row(data, dataset: str, name: str, config: TrainConfig, zero_run, variant: str, mw_normalize: str):
    """Train ``config`` (unless finished), index and evaluate it on test, record the row with its paired
    t-test against zero-shot and save its run; returns the evaluation report."""
    split, loss, output = "test", config.loss, config.output
    summary_path = output / "train_summary.json"
    if not summary_path.is_file():
        train(config)
    summary = json.loads(summary_path.read_text())
    start = time.perf_counter()
    encoder = BiEncoder.load(str(output), show_progress=True)
    index, _, _ = build_index(data, encoder, name, root=ROOT / "indexes")
    report = evaluate_index(index, encoder, data, split=split, k=1000)
    metrics = report.metrics | {
        "train_seconds": summary["train_seconds"], "samples_per_s": summary["samples_per_s"],
        "train_rows": summary["rows"], "tau": summary["tau"], "steps": summary["steps"], "epochs": config.epochs,
        "best_dev_ndcg@10": summary.get("best_dev_ndcg@10"),
    }
    test = paired_test(data.qrels(split), report.run, zero_run)
    metrics |= {"p_vs_zero_shot": f"{test['p']:.2g}", "delta_vs_zero_shot": test["delta"]}
    label = f"all-MiniLM-L6-v2+{loss}" + (f" (tau={config.tau:g}, norm={mw_normalize})" if variant else "")
    if config.max_pairs:
        metrics["max_pairs"] = config.max_pairs
        label += f" ({config.max_pairs} pairs)"
    label += rows_label(config.rows)
    record(dataset, split, loss, label, metrics, summary["train_seconds"] + time.perf_counter() - start)
    write_trec_run(report.run, ROOT / "bench" / "runs" / f"{name}-{split}.trec", tag=loss)
    return report


def main(
    dataset: str = typer.Option("scifact"),
    losses: list[str] = typer.Option(["mnrl", "contrastive", "mw"], "--loss"),
    max_pairs: int | None = typer.Option(None, help="Subsample training pairs (seeded), e.g. for NFCorpus."),
    epochs: float = typer.Option(1.0),
    batch_size: int = typer.Option(32),
    learning_rate: float = typer.Option(2e-5),
    seed: int = typer.Option(42),
    dev_corpus_size: int = typer.Option(500),
    temperature: float | None = typer.Option(None, help="tau for every listed loss (default: each loss's own)."),
    mw_normalize: str = typer.Option("pairs", help="MW normalisation: pairs (default) | batch (the paper's 1/B)."),
    zero_shot: bool = typer.Option(True, "--zero-shot/--no-zero-shot", help="Also (re)evaluate zero-shot."),
    max_steps: int = typer.Option(-1, help="Cap on training steps (quick checks)."),
    min_epochs: int = typer.Option(0, help="Early stopping never stops before this many epochs."),
    patience: int | None = typer.Option(None, help="Stop after this many dev evaluations without a better dev "
                                        "nDCG@10 (default: never; the best dev model is kept either way)."),
    rows: str = typer.Option("pair", help="pair: every labelled pair | query: one row per training query per "
                             "epoch, its positive drawn by grade (Tevatron's convention; graded NFCorpus)"),
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    data = load_dataset(dataset)
    split = "test"
    qrels = data.qrels(split)
    runs, curves = {}, {}

    zero = BiEncoder.load("default", show_progress=True)  # its corpus vectors come from the embedding cache
    index, manifest, _ = build_index(data, zero, f"{dataset}-zero-shot", root=ROOT / "indexes")
    report = evaluate_index(index, zero, data, split=split, k=1000, with_auc=zero_shot)
    zero_run = report.run
    if zero_shot:
        runs["zero-shot"], curves["zero-shot"] = report.run, (report.auc.labels, report.auc.scores)

    variant = (f"-tau{temperature:g}" if temperature else "") + ("-norm-batch" if mw_normalize == "batch" else "")
    for loss in losses:
        name = f"{dataset}-{loss}{variant}" + ("-per-query" if rows == "query" else "")
        output = ROOT / "models" / name
        config = TrainConfig(data=dataset, loss=loss, batch_size=batch_size, learning_rate=learning_rate,
                             epochs=epochs, seed=seed, output=output, max_pairs=max_pairs,
                             dev_corpus_size=dev_corpus_size, early_stopping_patience=patience,
                             min_epochs=min_epochs, rows=rows,
                             temperature=temperature, mw_normalize=mw_normalize, max_steps=max_steps,
                             resume=(output / "checkpoints").is_dir())
        report = _loss_row(data, dataset, name, config, zero_run, variant, mw_normalize)
        runs[f"{loss}{variant}"], curves[f"{loss}{variant}"] = report.run, (report.auc.labels, report.auc.scores)

    if len(runs) > 1:
        suffix = f"losses{variant}" + (f"-{max_pairs}pairs" if max_pairs else "")
        plot_roc(curves, ROOT / "docs" / f"roc_{dataset}_{split}_{suffix}.png",
                 title=f"{dataset} {split}: AUC protocol")
        write_significance(dataset, split, suffix, qrels, runs)


if __name__ == "__main__":
    typer.run(main)
