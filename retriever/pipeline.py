"""Library entry points the CLI, the benchmarks and the service share: build, open, retrieve, evaluate."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retriever.data import BeirDataset
from retriever.docstore import COMPLETE, STORE_FILE, DocumentStore
from retriever.encoders import BiEncoder
from retriever.evaluate import DEFAULT_METRICS, AucResult, evaluate_run, retrieval_auc
from retriever.index import DataSource, IndexManifest, VectorStore, index_root, load_index, save_index
from retriever.index.backends import create_store
from retriever.index.store import current_version_dir, resolve_index_dir
from retriever.rerank import load_reranker, rerank_run
from retriever.search import FusionParams, Hit, SearchOutcome, search
from retriever.types import Run

__all__ = ["Hit", "SearchOutcome", "build_index", "create_store", "open_index", "open_store", "retrieve",
           "search_texts"]

logger = logging.getLogger(__name__)


def build_index(
    dataset: BeirDataset,
    encoder: BiEncoder,
    name: str,
    spec: str = "Flat",
    root: Path | None = None,
    use_gpu: bool = True,
    backend: str = "faiss",
    uri: str | None = None,
    lexical: bool = True,
) -> tuple[VectorStore, IndexManifest, Path]:
    """Encode the corpus, index it and save it atomically as ``<root>/<name>``; with ``lexical``, also fill
    the folder's document store (texts, corpus metadata) and its FTS5 index."""
    doc_ids = dataset.doc_ids
    vectors = encoder.encode_documents(dataset.doc_texts(doc_ids))
    folder = (root or index_root()) / name
    index = create_store(encoder.dimension, spec, backend, folder, uri, use_gpu)
    index.add(doc_ids, vectors, documents=[(d, dataset.corpus[d]["title"], dataset.corpus[d]["text"],
                                            dataset.doc_metadata.get(d)) for d in doc_ids])
    manifest = IndexManifest(
        name=name,
        model_id=encoder.document.model_id,
        model_fingerprint=encoder.document.fingerprint,
        query_model_id=None if encoder.shared else encoder.query.model_id,
        query_model_fingerprint=None if encoder.shared else encoder.query.fingerprint,
        dimension=encoder.dimension,
        index_spec=spec,
        inference_backend=encoder.backend,
        data_source=DataSource(dataset=dataset.name, path=str(dataset.path), sha256=dataset.content_hash),
    )
    path = save_index(index, manifest, folder)
    if lexical:
        store = DocumentStore(folder / STORE_FILE, lexical=True)
        store.upsert((d, doc["title"], doc["text"], dataset.doc_metadata.get(d)) for d, doc in dataset.corpus.items())
        store.set_meta(COMPLETE, "1")
        store.close()
    return index, manifest.model_copy(update={"count": len(index), "version": path.name}), path


def open_index(
    name_or_path: str | Path, encoder: BiEncoder | None = None, use_gpu: bool = True, **encoder_kwargs
) -> tuple[VectorStore, IndexManifest, BiEncoder]:
    """Load an index and the encoder it was built with (or check that ``encoder`` matches it)."""
    if encoder is None:
        manifest = IndexManifest.model_validate_json(
            (current_version_dir(resolve_index_dir(name_or_path)) / "manifest.json").read_text()
        )
        encoder = BiEncoder.load(manifest.model_id, query_model=manifest.query_model_id, **encoder_kwargs)
    index, manifest = load_index(
        name_or_path, model_fingerprint=encoder.document.fingerprint, dimension=encoder.dimension, use_gpu=use_gpu
    )
    if manifest.inference_backend != encoder.backend:  # same weights, other precision: usable, but say so
        logger.warning("index '%s' was encoded on the %s backend; queries now run on %s (rebuild it with "
                       "--backend %s to match)", manifest.name, manifest.inference_backend, encoder.backend,
                       encoder.backend)
    return index, manifest, encoder


def open_store(name_or_path: str | Path) -> DocumentStore | None:
    """The index folder's document store (texts, metadata, lexical side), when it has one."""
    path = resolve_index_dir(name_or_path) / STORE_FILE
    return DocumentStore(path) if path.is_file() else None


def retrieve(
    index: VectorStore, encoder: BiEncoder, queries: dict[str, str], k: int = 100, ignore_identical_ids: bool = True,
    mode: str = "dense", store: DocumentStore | None = None, params: FusionParams | None = None,
    relevance_model=None,
) -> Run:
    """Top-``k`` per query as a run. As in BEIR, a document whose id equals the query id is dropped."""
    qids = list(queries)
    outcome = search(index, encoder, [queries[q] for q in qids], k + 1 if ignore_identical_ids else k, mode=mode,
                     store=store, params=params, relevance_model=relevance_model)
    run: Run = {}
    for qid, hits in zip(qids, outcome.hits, strict=True):
        kept = [(h.id, h.score) for h in hits if not (ignore_identical_ids and h.id == qid)]
        run[qid] = dict(kept[:k])
    return run


def positive_scores(dataset: BeirDataset, encoder: BiEncoder, qrels: dict[str, dict[str, int]]):
    """Cosine of every labelled (query, positive) pair, retrieved or not."""
    pairs = [(q, d) for q, docs in qrels.items() for d, rel in docs.items() if rel > 0]
    if not pairs:
        return {}
    qids = list(qrels)
    qvec = dict(zip(qids, encoder.encode_queries([dataset.queries[q] for q in qids]), strict=True))
    doc_ids = sorted({d for _, d in pairs})
    dvec = dict(zip(doc_ids, encoder.encode_documents(dataset.doc_texts(doc_ids)), strict=True))
    scores = np.einsum("ij,ij->i", np.stack([qvec[q] for q, _ in pairs]), np.stack([dvec[d] for _, d in pairs]))
    out: dict[str, dict[str, float]] = {}
    for (q, d), s in zip(pairs, scores.tolist(), strict=True):
        out.setdefault(q, {})[d] = s
    return out


@dataclass
class EvalReport:
    metrics: dict[str, float]
    run: Run
    auc: AucResult | None = None
    n_queries: int = 0
    extra: dict = field(default_factory=dict)


def evaluate_index(
    index: VectorStore,
    encoder: BiEncoder,
    dataset: BeirDataset,
    split: str = "test",
    k: int = 1000,
    with_auc: bool = True,
    metrics: tuple[str, ...] = DEFAULT_METRICS,
    mode: str = "dense",
    store: DocumentStore | None = None,
    params: FusionParams | None = None,
    relevance_model=None,
) -> EvalReport:
    """Retrieve the split's queries, score with ranx, and add global and per-query AUC (top-500 negatives;
    dense mode only: the protocol scores every labelled pair by cosine)."""
    qrels = dataset.qrels(split)
    run = retrieve(index, encoder, dataset.split_queries(split), k=k, mode=mode, store=store, params=params,
                   relevance_model=relevance_model)
    scores = evaluate_run(qrels, run, metrics)
    auc = None
    if with_auc and mode == "dense":
        auc = retrieval_auc(qrels, run, positive_scores(dataset, encoder, qrels), n_neg=500)
        scores.update(auc_global=auc.auc_global, auc_per_query=auc.auc_per_query)
    return EvalReport(metrics=scores, run=run, auc=auc, n_queries=len(qrels))


@dataclass
class RerankReport:
    metrics: dict[str, float]
    run: Run
    ms_per_query: float
    seconds: float


def rerank_evaluation(dataset: BeirDataset, split: str, run: Run, reranker, depth: int = 100,
                      metrics: tuple[str, ...] = ("ndcg@10", "mrr@10", "recall@100")) -> RerankReport:
    """Rerank a first-stage run's top ``depth`` for the split's queries and score it. ``reranker`` is a
    loaded reranker or a path for :func:`retriever.rerank.load_reranker`."""
    if isinstance(reranker, str):
        reranker = load_reranker(reranker)
    queries = dataset.split_queries(split)
    heads = {q: dict(sorted(hits.items(), key=lambda x: -x[1])[:depth]) for q, hits in run.items()}
    doc_ids = sorted({d for hits in heads.values() for d in hits})
    texts = dict(zip(doc_ids, dataset.doc_texts(doc_ids), strict=True))
    start = time.perf_counter()
    reranked = rerank_run(reranker, {q: queries[q] for q in heads}, heads, texts, depth)
    seconds = time.perf_counter() - start
    qrels = dataset.qrels(split)
    scores = evaluate_run({q: qrels[q] for q in reranked if q in qrels}, reranked, metrics)
    return RerankReport(scores, reranked, 1000 * seconds / max(len(heads), 1), seconds)


def rerank_texts(index: VectorStore, encoder: BiEncoder, reranker, queries: list[str], doc_texts: dict[str, str],
                 depth: int = 20, k: int = 10) -> list[list[tuple[str, float, float]]]:
    """Retrieve ``depth`` candidates per query, rerank them all in one batched call, keep the top ``k``:
    ``(doc id, rerank score, cosine)`` per hit."""
    result = index.search(encoder.encode_queries(queries), depth)
    pair_q = [q for q, ids in zip(queries, result.ids, strict=True) for _ in ids]
    pair_d = [d for ids in result.ids for d in ids]
    scores = reranker.score_pairs(pair_q, [doc_texts.get(d, "") for d in pair_d])
    out, start = [], 0
    for ids, cosines in zip(result.ids, result.scores, strict=True):
        chunk = scores[start: start + len(ids)]
        start += len(ids)
        order = np.argsort(-chunk, kind="stable")[:k]
        out.append([(ids[i], float(chunk[i]), float(cosines[i])) for i in order])
    return out


def search_texts(index: VectorStore, encoder: BiEncoder, queries: list[str], k: int, relevance_model=None,
                 min_relevance: float | None = None, query_vectors: np.ndarray | None = None) -> SearchOutcome:
    """Dense search (see :func:`retriever.search.search` for lexical and hybrid modes)."""
    return search(index, encoder, queries, k, relevance_model=relevance_model, min_relevance=min_relevance,
                  query_vectors=query_vectors)
