"""``retriever index build|list|info``."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import typer
from rich.table import Table

from retriever.cli.backend_option import BackendOpt, use_backend
from retriever.cli.common import DataOpt, JsonOpt, emit
from retriever.data import load_dataset
from retriever.encoders import BiEncoder
from retriever.index import index_root, list_indexes
from retriever.index.store import current_version_dir, index_manifest, resolve_index_dir
from retriever.pipeline import build_index

logger = logging.getLogger(__name__)
STORES = ("faiss", "milvus")
index_app = typer.Typer(help="Build and inspect FAISS indexes.", no_args_is_help=True)


@index_app.command("build")
def build_command(
    data: str = DataOpt,
    name: str = typer.Option(..., "--name", "-n", help="Index name, saved under the index folder."),
    model: str = typer.Option("default", "--model", "-m", help="Sentence-transformers model path or name."),
    query_model: str | None = typer.Option(None, help="Separate query tower, if any."),
    spec: str = typer.Option("Flat", help="FAISS factory string: Flat, HNSW32, IVF256,Flat, IVF256,PQ16 ..."),
    root: Path | None = typer.Option(None, help="Index folder (default $RETRIEVER_INDEX_DIR or indexes/)."),
    store: str = typer.Option("faiss", "--store", help="Vector store: faiss (in process) | milvus (Lite file or "
                                                       "server)."),
    uri: str | None = typer.Option(None, help="Milvus URI: http://host:19530, or a file for Milvus Lite "
                                              "(default: <index folder>/milvus.db)."),
    batch_size: int = typer.Option(64, min=1),
    lexical: bool = typer.Option(True, "--lexical/--no-lexical",
                                 help="Also build the lexical (FTS5 BM25) side, for lexical and hybrid search."),
    backend: str | None = BackendOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Encode a dataset's corpus and save a FAISS index (with its lexical side, unless --no-lexical)."""
    if backend in STORES:  # before --store existed, --backend named the vector store
        logger.warning("--backend %s names a vector store: use --store %s (--backend is now the inference "
                       "runtime: torch | onnx | onnx-int8 | auto)", backend, backend)
        store, backend = backend, None
    use_backend(backend)
    dataset = load_dataset(data)
    encoder = BiEncoder.load(model, query_model=query_model, show_progress=True, batch_size=batch_size)
    start = time.perf_counter()
    index, manifest, path = build_index(dataset, encoder, name, spec=spec, root=root, backend=store, uri=uri,
                                        lexical=lexical)
    info = manifest.model_dump() | {"path": str(path), "seconds": round(time.perf_counter() - start, 2)}
    table = Table(title=f"index '{name}'")
    info["store"], info["lexical"] = store, lexical
    for key in ("path", "store", "lexical", "inference_backend", "model_id", "dimension", "index_spec", "count",
                "seconds"):
        table.add_row(key, str(info[key]))
    emit(info, as_json, table)


@index_app.command("list")
def list_command(as_json: bool = JsonOpt) -> None:
    """List the indexes under the index folder."""
    names = list_indexes()
    table = Table(title=f"indexes in {index_root()}")
    table.add_column("name")
    for name in names:
        table.add_row(name)
    emit(names, as_json, table)


@index_app.command("info")
def info_command(index: str = typer.Argument(..., help="Index name or path."), as_json: bool = JsonOpt) -> None:
    """Show an index's manifest."""
    path = current_version_dir(resolve_index_dir(index)) / "manifest.json"
    manifest = index_manifest(index).model_dump()
    table = Table(title=str(path))
    for key, value in manifest.items():
        table.add_row(key, str(value))
    emit(manifest, as_json, table)
