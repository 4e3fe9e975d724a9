"""``retriever export onnx MODEL``: ONNX Runtime files for fast CPU inference, guarded for quality."""

from __future__ import annotations

import typer
from rich.table import Table

from retriever.cli.common import emit
from retriever.onnx.exporter import export_onnx

export_app = typer.Typer(help="Export models for other runtimes.", no_args_is_help=True)


@export_app.command("onnx")
def onnx_command(
    model: str = typer.Argument(..., help="Bi-encoder (sentence-transformers folder, towers.json folder, "
                                          "'default') or cross-encoder folder."),
    quantize: str | None = typer.Option(None, "--quantize", help="int8: also a dynamic int8 file, kept only "
                                                                 "if it passes the nDCG@10 guard."),
    optimize: bool = typer.Option(False, "--optimize", help="Fuse attention, LayerNorm and GELU (model_O2.onnx)."),
    guard_data: str = typer.Option("scifact", help="Dataset whose --guard-split the int8 guard evaluates on; "
                                                   "'none' for fp32 only (its sample guard uses fixed texts)."),
    guard_split: str = typer.Option("dev", help="Split of --guard-data the int8 guard evaluates."),
    guard_depth: int = typer.Option(20, min=1, help="Cross-encoders: BM25 candidates per guard query reranked."),
    kind: str = typer.Option("auto", help="auto | bi-encoder | cross-encoder"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Write onnx/model.onnx (and model_O2.onnx, model_qint8_<isa>.onnx) in sentence-transformers' layout,
    with onnx/export.json recording each backend's guard. fp32 must reach cosine >= 0.9999 to torch; int8
    must keep nDCG@10 within 0.005 of fp32 (else it is refused and deleted)."""
    if kind not in ("auto", "bi-encoder", "cross-encoder"):
        raise typer.BadParameter(f"unknown kind '{kind}'", param_hint="--kind")
    if quantize not in (None, "int8"):
        raise typer.BadParameter(f"unknown quantization '{quantize}' (int8)", param_hint="--quantize")
    data = None if guard_data.lower() == "none" else guard_data
    exports = export_onnx(model, quantize=quantize, optimize=optimize, guard_data=data, guard_split=guard_split,
                          kind=kind, guard_depth=guard_depth)
    table = Table(title=f"ONNX export of {model}")
    for column in ("folder", "backend", "file", "passed", "guard"):
        table.add_column(column)
    for folder, manifest in exports:
        for backend, entry in manifest.backends.items():
            checks = {k: round(v, 6) for k, v in entry.guard.items() if isinstance(v, float | int)}
            table.add_row(str(folder), backend, entry.file, str(entry.passed), str(checks))
    emit([m.model_dump() | {"folder": str(f)} for f, m in exports], as_json, table)
