"""``retriever data info``: what a dataset holds and what its validation found."""

from __future__ import annotations

import typer
from rich.table import Table

from retriever.cli.common import emit
from retriever.data import load_dataset

data_app = typer.Typer(help="Inspect BEIR-layout datasets.", no_args_is_help=True)


@data_app.command("info")
def info_command(
    data: str = typer.Argument(..., help="Dataset name or folder."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Counts per split and validation warnings."""
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
