"""``retriever calibrate``: fit the index's Cosine Adapter and global threshold, report, plot, save."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from retriever.cli.backend_option import BackendOpt, use_backend
from retriever.cli.common import ForceOpt, emit
from retriever.data import load_dataset
from retriever.filtering import calibrate, plot_calibration
from retriever.filtering.calibrate import DEFAULT_MAPPING
from retriever.filtering.fit import UNRETRIEVED_WEIGHT
from retriever.index.manifest import check_data_source
from retriever.index.store import index_manifest, resolve_index_dir
from retriever.pipeline import open_index, open_store


def calibrate_command(
    index: str = typer.Option(..., "--index", "-i", help="Index name or path."),
    data: str = typer.Option(..., "--data", "-d", help="Dataset with qrels (train to fit, dev to pick)."),
    target_recall: float = typer.Option(0.95, min=0.01, max=1.0, help="Recall the threshold must keep."),
    target_precision: float | None = typer.Option(None, min=0.0, max=1.0, help="Use a precision target instead."),
    k: int = typer.Option(100, "--top-k", "-k", min=1, help="Candidates per query."),
    mapping: str = typer.Option(DEFAULT_MAPPING, help="linear | sqrt | quadratic | power | auto (best on dev)"),
    unretrieved_weight: float = typer.Option(UNRETRIEVED_WEIGHT, min=0.0, max=1.0,
                                             help="Weight of positives outside the top-k in the fit (0: left out)."),
    hybrid: bool = typer.Option(True, "--hybrid/--no-hybrid",
                                help="Also fit the calibrated fusion and tune the hybrid fusions on dev "
                                     "(indexes with a lexical side)."),
    seed: int = typer.Option(42),
    png: Path | None = typer.Option(None, help="PR-curve PNG (default: beside the index)."),
    save: bool = typer.Option(True, help="Store adapter and threshold in the index (a new version)."),
    force: bool = ForceOpt,
    backend: str | None = BackendOpt,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Fit a Cosine Adapter (Rossi et al., CIKM 2024) and pick one global threshold for the index."""
    use_backend(backend)
    if mapping not in ("linear", "sqrt", "quadratic", "power", "auto"):
        raise typer.BadParameter(f"unknown mapping '{mapping}'", param_hint="--mapping")
    dataset = load_dataset(data)
    check_data_source(index_manifest(index), dataset, force)
    faiss_index, manifest, encoder = open_index(index, show_progress=True)
    folder = resolve_index_dir(index)
    store = open_store(index) if hybrid else None
    report = calibrate(faiss_index, manifest, encoder, dataset, k=k, target_recall=target_recall,
                       target_precision=target_precision, mapping=mapping, seed=seed,
                       save_to=folder if save else None, store=store, unretrieved_weight=unretrieved_weight)
    png = png or folder / f"calibration_k{report.k}.png"
    plot_calibration(report, png, title=f"{manifest.name} on {dataset.name}: top-{report.k} candidates")
    table = Table(title=f"filtering on {dataset.name} (top-{report.k}; threshold chosen on dev for {report.target})")
    for column in ("method", "PR-AUC", "P@R95", "filtered@R95", "threshold", "results/query", "recall", "precision"):
        table.add_column(column, justify="right")
    for method, m in report.metrics.items():
        table.add_row(method.removeprefix("filter-"), f"{m.pr_auc:.4f}", f"{m.p_at_r95:.4f}",
                      f"{m.filtered_at_r95:.1%}", f"{m.threshold:.4f}", f"{m.results_per_query:.1f}",
                      f"{m.recall_at_threshold:.3f}", f"{m.precision_at_threshold:.3f}")
    out = {"k": report.k, "target": report.target, "threshold": report.threshold, "splits": report.splits,
           "notes": report.notes, "png": str(png), "saved": save, "mapping": report.mapping, "hybrid": report.hybrid,
           "metrics": {m: v.as_dict() for m, v in report.metrics.items()}}
    emit(out, as_json, table)
    if report.hybrid and not as_json:
        h = report.hybrid
        typer.echo(f"hybrid: dev nDCG@10 {', '.join(f'{f} {v:.4f}' for f, v in h['dev_ndcg@10'].items())}; "
                   f"default fusion {h['fusion']}, convex alpha {h['alpha']}, calibrated threshold "
                   f"{h['calibration']['threshold']:.4f}")
    if not as_json:
        for note in report.notes:
            typer.echo(f"note: {note}")
        typer.echo(f"PR curves: {png}" + (f"; adapter saved in {folder}" if save else ""))
