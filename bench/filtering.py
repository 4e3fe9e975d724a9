"""Issue 8: relevance filtering with raw cosine, the Cosine Adapter and the per-query top-ratio baseline.

    python -m bench.filtering --dataset scifact --dataset nfcorpus --dataset msmarco-trecdl19-sample
    python -m bench.filtering --dataset scifact --model-index scifact-contrastive --model-index scifact-mw
    python -m bench.filtering --adapter-study --dataset scifact --dataset nfcorpus --k 100

``--adapter-study`` (issue 20): every mapping, fitted with and without the positives the first stage did
not retrieve, measured on dev (where the default is chosen) and on test.

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
from retriever.filtering import calibrate, collect_candidates, filter_metrics, fit_adapter, plot_calibration
from retriever.filtering.calibrate import ensure_train_dev
from retriever.filtering.fit import adapter_scores
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


def adapter_study(name: str, depth: int, mappings: list[str]) -> None:
    """Mapping x unretrieved-positive weight: dev and test PR-AUC of the fitted adapter."""
    index, manifest, encoder, data = zero_shot_index(name)
    data, _ = ensure_train_dev(data)
    split = {s: collect_candidates(index, encoder, data, s, depth) for s in ("train", "dev", "test")}
    model = manifest.model_id.split("/")[-1]
    for mapping in mappings:
        for weight in (0.0, 1.0):
            start = time.perf_counter()
            adapter = fit_adapter(split["train"], split["dev"], mapping=mapping, unretrieved_weight=weight)
            seconds = time.perf_counter() - start
            out = {"k": split["test"].k, "unretrieved_weight": weight}
            for part in ("dev", "test"):
                c = split[part]
                out[f"{part}_pr_auc"] = filter_metrics(adapter_scores(adapter, c), c.labels, c.valid).pr_auc
            record(name, "dev", f"filter-adapter-{mapping}", f"{model} (k={out['k']}, unretrieved weight "
                   f"{weight:g})", out, seconds)


def main(
    dataset: list[str] = typer.Option(["scifact", "nfcorpus", "msmarco-trecdl19-sample"]),
    k: list[int] = typer.Option([100, 1000], "--k"),
    model_index: list[str] = typer.Option([], help="Indexes of trained models: raw-cosine PR-AUC only."),
    study: bool = typer.Option(False, "--adapter-study", help="Mappings x unretrieved positives, dev and test."),
    mapping: list[str] = typer.Option(["linear", "sqrt", "quadratic", "power"], help="Mappings of the study."),
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if study:
        for name in dataset:
            adapter_study(name, k[0], mapping)
        return
    for name in dataset:
        index, manifest, encoder, data = zero_shot_index(name)
        model = manifest.model_id.split("/")[-1]
        for depth in k:
            start = time.perf_counter()
            report = calibrate(index, manifest, encoder, data, k=depth, mapping="power", unretrieved_weight=1.0)
            seconds = time.perf_counter() - start
            by_mapping = {f"pr_auc_{m}": calibrate(index, manifest, encoder, data, k=depth, mapping=m,
                                                            unretrieved_weight=1.0)
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
