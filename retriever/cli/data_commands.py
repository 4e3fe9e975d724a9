"""``retriever data info``: what a dataset holds and what its validation found."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from retriever.cli.common import emit
from retriever.data import load_dataset
from retriever.data.derive import hide_positives

data_app = typer.Typer(help="Inspect BEIR-layout datasets.", no_args_is_help=True)


@data_app.command("info")
def info_command(
    data: str = typer.Argument(..., help="Dataset name or folder."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Document and query counts, counts per split and validation warnings."""
    dataset = load_dataset(data)
    info = {
        "name": dataset.name,
        "path": str(dataset.path),
        "documents": len(dataset.corpus),
        "queries": len(dataset.queries),
        "splits": {s: {"queries": len(dataset.qrels(s)), "pairs": sum(map(len, dataset.qrels(s).values()))}
                   for s in dataset.splits},
        "dev_is_derived": dataset.dev_is_derived,
        "warnings": dataset.warnings,
    }
    table = Table(title=f"{dataset.name} ({dataset.path})")
    for column in ("split", "queries", "pairs"):
        table.add_column(column)
    for split, counts in info["splits"].items():
        table.add_row(split + (" (held out of train)" if split == "dev" and dataset.dev_is_derived else ""),
                      str(counts["queries"]), str(counts["pairs"]))
    emit(info, as_json, table)
    if not as_json:
        typer.echo(f"{dataset.name}: {info['documents']:,} documents, {info['queries']:,} queries")


@data_app.command("hide-positives")
def hide_positives_command(
    data: str = typer.Argument(..., help="Dataset name or folder."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder of the derived dataset."),
    fraction: float = typer.Option(0.5, min=0.01, max=0.99, help="Share of train positives to hide."),
    seed: int = typer.Option(42),
) -> None:
    """Derive a dataset with part of the train positives hidden (controlled false-negative experiments)."""
    path = hide_positives(load_dataset(data), output, fraction, seed)
    typer.echo(f"{path}: {fraction:.0%} of train positives hidden (listed in {path}/hidden_positives.tsv)")
