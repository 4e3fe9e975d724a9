"""Issue 8: relevance filtering with raw cosine, the Cosine Adapter and the per-query top-ratio baseline.

    python -m bench.filtering --dataset scifact --dataset nfcorpus --dataset msmarco-trecdl19-sample
    python -m bench.filtering --dataset scifact --model-index scifact-contrastive --model-index scifact-mw

Indexes are built with the zero-shot model when missing. ``--model-index`` adds raw-cosine PR-AUC for
indexes of trained models (the MW paper's calibration claim).
"""

from __future__ import annotations

import logging
import time

import typer

from bench.results import ROOT, record
from retriever.data import load_dataset
from retriever.encoders import BiEncoder
from retriever.errors import IndexNotFoundError
from retriever.filtering import calibrate, collect_candidates, filter_metrics, plot_calibration
from retriever.filtering.calibrate import ensure_train_dev
from retriever.pipeline import build_index, open_index

ROOT_INDEXES = ROOT / "indexes"
MAPPINGS = ("linear", "sqrt", "quadratic")


def zero_shot_index(name: str):
    dataset = load_dataset(name)
    try:
        return (*open_index(ROOT_INDEXES / f"{name}-zero-shot"), dataset)
    except IndexNotFoundError:
        encoder = BiEncoder.load("default", show_progress=True)
        index, manifest, _ = build_index(dataset, encoder, f"{name}-zero-shot", root=ROOT_INDEXES)
        return index, manifest, encoder, dataset


def main(
    dataset: list[str] = typer.Option(["scifact", "nfcorpus", "msmarco-trecdl19-sample"]),
    k: list[int] = typer.Option([100, 1000], "--k"),
    model_index: list[str] = typer.Option([], help="Indexes of trained models: raw-cosine PR-AUC only."),
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for name in dataset:
        index, manifest, encoder, data = zero_shot_index(name)
        model = manifest.model_id.split("/")[-1]
        for depth in k:
            start = time.perf_counter()
            report = calibrate(index, manifest, encoder, data, k=depth, mapping="power")
            seconds = time.perf_counter() - start
            by_mapping = {f"pr_auc_{m}": calibrate(index, manifest, encoder, data, k=depth, mapping=m)
                          .metrics["filter-cosine-adapter"].pr_auc for m in MAPPINGS}
            plot_calibration(report, ROOT / "docs" / f"filtering_{name}_k{report.k}.png",
                             title=f"{name} test: top-{report.k} candidates")
            for method, metrics in report.metrics.items():
                extra = by_mapping if method == "filter-cosine-adapter" else {}
                record(name, "test", method, f"{model} (k={report.k})",
                       metrics.as_dict() | {"k": report.k} | extra, seconds)
        for other in model_index:
            if not other.startswith(name):
                continue
            trained_index, trained_manifest, trained_encoder = open_index(ROOT_INDEXES / other)
            evaluation, _ = ensure_train_dev(data)
            for depth in k:
                cands = collect_candidates(trained_index, trained_encoder, evaluation, "test", depth)
                metrics = filter_metrics(cands.cosines, cands.labels, cands.valid)
                record(name, "test", "filter-raw-cosine", f"{other} (k={cands.k})",
                       metrics.as_dict() | {"k": cands.k}, 0.0)


if __name__ == "__main__":
    typer.run(main)
