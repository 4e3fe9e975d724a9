"""``retriever index build|list|info``, ``retriever search`` and ``retriever eval``."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import typer
from rich.table import Table

from retriever import limits
from retriever.cli.backend_option import BackendOpt, use_backend
from retriever.cli.common import ForceOpt, emit, metrics_table
from retriever.data import load_dataset
from retriever.encoders import BiEncoder
from retriever.errors import RetrieverError
from retriever.evaluate import plot_roc, write_trec_run
from retriever.index import index_root, list_indexes
from retriever.index.manifest import check_data_source
from retriever.index.store import index_manifest
from retriever.pipeline import build_index, evaluate_index, open_index, open_store, rerank_evaluation
from retriever.search import MODES, fusion_params, search

logger = logging.getLogger(__name__)
STORES = ("faiss", "milvus")
index_app = typer.Typer(help="Build and inspect FAISS indexes.", no_args_is_help=True)

DataOpt = typer.Option(..., "--data", "-d", help="Dataset name (on the data path) or BEIR folder.")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON.")
ModelOpt = typer.Option(None, "--model", "-m", help="Model path or name; default: the one the index was built with.")
ModeOpt = typer.Option(None, help="dense | lexical | hybrid (default: hybrid when the index has a lexical side)")
FusionOpt = typer.Option(None, help="Hybrid fusion: rrf | convex | tmm | calibrated (default: the one "
                                    "'retriever calibrate' chose on dev, else convex).")


def resolve_mode(mode: str | None, store) -> str:
    """The requested mode, checked; by default hybrid when the index has a lexical side."""
    if mode is None:
        return "hybrid" if store is not None and store.has_lexical else "dense"
    if mode not in MODES:
        raise typer.BadParameter(f"unknown mode '{mode}' (choose from {', '.join(MODES)})", param_hint="--mode")
    if mode != "dense" and (store is None or not store.has_lexical):
        raise typer.BadParameter(f"{mode} mode needs the index's lexical side: rebuild it without --no-lexical",
                                 param_hint="--mode")
    return mode


def parse_where(where: str | None) -> dict | None:
    if where is None:
        return None
    import json

    from retriever.where import FilterError, normalise

    try:
        parsed = json.loads(where)
        normalise(parsed)
    except (ValueError, FilterError) as exc:
        raise typer.BadParameter(f"not a valid filter: {exc}", param_hint="--where") from None
    return parsed


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
    from retriever.index.store import current_version_dir, resolve_index_dir

    path = current_version_dir(resolve_index_dir(index)) / "manifest.json"
    manifest = index_manifest(index).model_dump()
    table = Table(title=str(path))
    for key, value in manifest.items():
        table.add_row(key, str(value))
    emit(manifest, as_json, table)


def search_command(
    query: list[str] = typer.Argument(..., help="One or more query texts."),
    index: str = typer.Option(..., "--index", "-i", help="Index name or path."),
    model: str | None = ModelOpt,
    k: int = typer.Option(10, "--top-k", "-k", min=1, max=limits.MAX_TOP_K),
    calibrated_filter: bool = typer.Option(True, "--filter/--no-filter",
                                           help="Drop hits below the index's calibrated threshold, if it has one."),
    mode: str | None = ModeOpt,
    fusion: str | None = FusionOpt,
    where: str | None = typer.Option(None, help='Metadata filter as JSON, e.g. \'{"year": {"gte": 2015}}\'.'),
    as_json: bool = JsonOpt,
) -> None:
    """Search an index with free text (dense, lexical or hybrid); calibrated indexes give each hit a relevance."""
    from retriever.filtering import load_relevance_model

    limits.check_queries(query)
    encoder = BiEncoder.load(model) if model else None
    faiss_index, manifest, encoder = open_index(index, encoder)
    store = open_store(index)
    mode = resolve_mode(mode, store)
    relevance_model = load_relevance_model(index, manifest)
    params = fusion_params(relevance_model.info if relevance_model else None, fusion)
    outcome = search(faiss_index, encoder, query, k, mode=mode, store=store, relevance_model=relevance_model,
                     params=params, where=parse_where(where))
    threshold = outcome.threshold if calibrated_filter else None
    titles = _titles(manifest)
    results = [
        {"query": text, "mode": outcome.mode, "fusion": outcome.fusion, "calibrated": outcome.calibrated,
         "threshold": threshold, "timings_ms": outcome.timings_ms,
         "hits": [{"id": h.id, "score": h.score, "relevance": h.relevance, "title": titles.get(h.id, "")}
                  for h in hits if threshold is None or h.relevance is None or h.relevance >= threshold]}
        for text, hits in zip(query, outcome.hits, strict=True)
    ]
    if as_json:
        emit(results, True)
        return
    for result in results:
        note = (f"{outcome.mode}; " + (f"calibrated, threshold {threshold:.3f}" if threshold is not None else
                "calibrated, unfiltered" if outcome.calibrated else "uncalibrated scores"))
        table = Table(title=f"{result['query']}  [{note}]", caption=SCORES_CAPTION)
        for column in ("rank", "id", "score", "relevance", "title"):
            table.add_column(column)
        for rank, hit in enumerate(result["hits"], 1):
            rel = "" if hit["relevance"] is None else f"{hit['relevance']:.3f}"
            table.add_row(str(rank), hit["id"], f"{hit['score']:.4f}", rel, hit["title"][:70])
        emit(None, False, table)


SCORES_CAPTION = ("cosine: similarity of query and document (-1 to 1), comparable only within one query. "
                  "relevance: the Cosine Adapter's calibrated probability (0 to 1) that the hit is relevant; "
                  "it is low when few documents are relevant, so compare it with the threshold, not with 1.")


def _source_dataset(manifest):
    """The dataset the index was built from, when it is still there."""
    if manifest.data_source is None or not Path(manifest.data_source.path).is_dir():
        return None
    return load_dataset(manifest.data_source.path)


def _titles(manifest, dataset=None) -> dict[str, str]:
    """Titles from the dataset the index was built from, when it is still there."""
    dataset = dataset or _source_dataset(manifest)
    if dataset is None:
        return {}
    return {d: doc["title"] or doc["text"][:80] for d, doc in dataset.corpus.items()}


def eval_command(
    index: str = typer.Option(..., "--index", "-i", help="Index name or path."),
    data: str = DataOpt,
    split: str = typer.Option("test", help="train, dev or test (dev is held out of train when absent)."),
    model: str | None = ModelOpt,
    k: int = typer.Option(1000, "--depth", help="Retrieval depth for the run."),
    run_file: Path | None = typer.Option(None, help="Write the run in TREC format here."),
    roc_png: Path | None = typer.Option(None, "--roc", help="Write the ROC curve (AUC protocol) as a PNG."),
    rerank: str | None = typer.Option(None, "--rerank", help="Reranker folder (train-reranker output) or smollm2."),
    rerank_depth: int = typer.Option(100, min=1, help="Candidates per query the reranker re-scores."),
    force: bool = ForceOpt,
    backend: str | None = BackendOpt,
    mode: str | None = typer.Option("dense", help="dense | lexical | hybrid"),
    fusion: str | None = FusionOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Evaluate an index on a split: nDCG@10, MRR@10, R@100, MAP@100 and (dense) global/per-query AUC; with
    --rerank, also the reranked top --rerank-depth."""
    from retriever.filtering import load_relevance_model

    use_backend(backend)
    dataset = load_dataset(data)
    check_data_source(index_manifest(index), dataset, force)
    encoder = BiEncoder.load(model, show_progress=True) if model else None
    faiss_index, manifest, encoder = open_index(index, encoder, show_progress=True)
    store = open_store(index)
    mode = resolve_mode(mode, store)
    relevance_model = load_relevance_model(index, manifest)
    params = fusion_params(relevance_model.info if relevance_model else None, fusion)
    report = evaluate_index(faiss_index, encoder, dataset, split=split, k=k, mode=mode, store=store, params=params,
                            relevance_model=relevance_model)
    result = {"index": manifest.name, "dataset": dataset.name, "split": split, "mode": mode,
              "fusion": params.fusion if mode == "hybrid" else None, "metrics": report.metrics}
    run = report.run
    if rerank:
        reranked = rerank_evaluation(dataset, split, report.run, rerank, rerank_depth)
        run = reranked.run
        result["reranked"] = reranked.metrics | {"ms_per_query": reranked.ms_per_query, "reranker": rerank}
    if run_file:
        write_trec_run(run, run_file, tag=manifest.name)
    if roc_png and report.auc is not None:
        plot_roc({manifest.name: (report.auc.labels, report.auc.scores)}, roc_png, title=f"{dataset.name} {split}")
    title = f"{manifest.name} ({mode}) on {dataset.name}/{split} ({report.n_queries} queries)"
    emit(result, as_json, metrics_table(title, report.metrics))
    if rerank and not as_json:
        numbers = {k: v for k, v in result["reranked"].items() if isinstance(v, float)}
        emit(None, False, metrics_table(f"reranked top {rerank_depth} with {rerank}", numbers))


def rerank_command(
    query: list[str] = typer.Argument(..., help="One or more query texts."),
    index: str = typer.Option(..., "--index", "-i", help="Index name or path."),
    reranker: str = typer.Option(..., "--reranker", "-r", help="Reranker folder (train-reranker output) or smollm2."),
    depth: int = typer.Option(20, "--depth", min=1, max=1000, help="Candidates retrieved, then re-scored."),
    k: int = typer.Option(10, "--top-k", "-k", min=1),
    backend: str | None = BackendOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Retrieve the top --depth from an index and rerank them."""
    use_backend(backend)
    from retriever.pipeline import rerank_texts

    limits.check_queries(query)
    from retriever.rerank import load_reranker

    faiss_index, manifest, encoder = open_index(index)
    dataset = _source_dataset(manifest)
    if dataset is None:
        raise RetrieverError("reranking needs the document texts: the index's dataset folder is gone")
    titles = _titles(manifest, dataset)
    texts = dict(zip(dataset.doc_ids, dataset.doc_texts(dataset.doc_ids), strict=True))
    results = rerank_texts(faiss_index, encoder, load_reranker(reranker), query, texts, depth, k)
    if as_json:
        emit([{"query": q, "hits": [{"id": d, "rerank_score": s, "cosine": c} for d, s, c in hits]}
              for q, hits in zip(query, results, strict=True)], True)
        return
    for text, hits in zip(query, results, strict=True):
        table = Table(title=f"{text}  [reranked top {depth} with {reranker}]")
        for column in ("rank", "id", "rerank", "cosine", "title"):
            table.add_column(column)
        for rank, (doc, score, cosine) in enumerate(hits, 1):
            table.add_row(str(rank), doc, f"{score:.4f}", f"{cosine:.4f}", titles.get(doc, "")[:70])
        emit(None, False, table)
