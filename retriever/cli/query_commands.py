"""``retriever search``, ``retriever eval`` and ``retriever rerank``: an index queried, evaluated, reranked."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from retriever import limits
from retriever.cli.backend_option import BackendOpt, use_backend
from retriever.cli.common import DataOpt, ForceOpt, JsonOpt, emit, metrics_table
from retriever.data import load_dataset
from retriever.encoders import BiEncoder
from retriever.errors import RetrieverError
from retriever.evaluate import plot_roc, write_trec_run
from retriever.filtering import load_relevance_model
from retriever.index.manifest import check_data_source
from retriever.index.store import index_manifest
from retriever.pipeline import evaluate_index, open_index, open_store, rerank_evaluation, rerank_texts
from retriever.rerank import load_reranker
from retriever.search import MODES, fusion_params, search
from retriever.where import FilterError, normalise

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
    try:
        parsed = json.loads(where)
        normalise(parsed)
    except (ValueError, FilterError) as exc:
        raise typer.BadParameter(f"not a valid filter: {exc}", param_hint="--where") from None
    return parsed


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
    limits.check_queries(query)
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
