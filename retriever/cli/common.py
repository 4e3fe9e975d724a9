"""Output helpers shared by CLI commands: rich tables for people, JSON for scripts."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

ForceOpt = typer.Option(False, "--force", help="Run even if the dataset is not the one the index was built from.")
DataOpt = typer.Option(..., "--data", "-d", help="Dataset name (on the data path) or BEIR folder.")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON.")

# Wide enough for the tables when output is piped or logged (no terminal to measure).
console = Console(width=None if sys.stdout.isatty() else 160)


def emit(data: Any, as_json: bool, table: Table | None = None) -> None:
    if as_json:
        print(json.dumps(data, indent=2, default=str))
    elif table is not None:
        console.print(table)


def metrics_table(title: str, metrics: dict[str, float]) -> Table:
    table = Table(title=title)
    for name in metrics:
        table.add_column(name, justify="right")
    table.add_row(*(f"{value:.4f}" for value in metrics.values()))
    return table
