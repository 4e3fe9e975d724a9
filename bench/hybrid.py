"""Issue 19: lexical engines, dense, and each fusion on the test splits, plus filtering with the fused relevance.

    python -m bench.hybrid --dataset scifact --dataset nfcorpus
    python -m bench.hybrid --dataset nfcorpus --dense-model nfcorpus=/work/models/nfcorpus-adore

Per dataset: ``lexical-fts5`` (the index's lexical side) and ``lexical-bm25s`` (the old baseline) with nDCG,
single-query p50 and the cost of an upsert; ``hybrid-<fusion>`` with the zero-shot model (adapter and
calibrated fusion fitted on train, the convex weight and the threshold chosen on dev, 100 candidates a side,
as served; search p50 of one query without its encoding, which both modes share, and the encoding p50
apart); paired t-tests against dense and lexical; ``filter-hybrid-calibrated`` against the Cosine Adapter
on the same hybrid top-K candidates (K = 100, 1000).

``--dense-model DATASET=PATH`` adds ``hybrid-<fusion>-<name>`` rows with a trained dense model whose document
tower is the zero-shot one (ADORE trains the query tower only), so the zero-shot index and its cached
corpus vectors serve it unchanged; its own adapter and fusion are fitted as for zero-shot, and the paired
t-tests compare it with its own dense run and with FTS5.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import typer

from bench.results import ROOT, record, write_significance
from retriever.bm25 import Bm25Retriever
from retriever.data import load_dataset
from retriever.docstore import STORE_FILE, DocumentStore
from retriever.encoders import BiEncoder
from retriever.errors import IndexNotFoundError
from retriever.evaluate import evaluate_run, write_trec_run
from retriever.filtering import filter_metrics, fit_relevance_model
from retriever.filtering.calibrate import ensure_train_dev
from retriever.filtering.store import RelevanceModel
from retriever.hybrid_fit import fit_hybrid_side, labelled_candidates, to_run
from retriever.lexical import NoLexicalSideError
from retriever.pipeline import build_index, open_index, retrieve
from retriever.rerank.first_stage import lexical_store
from retriever.search import calibrated_relevance, fuse, fusion_params, search

INDEXES = ROOT / "indexes"
RUNS = ROOT / "bench" / "runs"
METRICS = ("ndcg@10", "mrr@10", "recall@100", "map@100")
logger = logging.getLogger("bench.hybrid")


def zero_shot(name: str):
    """The zero-shot index (built when absent) and its document store. An index without a lexical side is
    refused as the service refuses it (409, :class:`~retriever.lexical.NoLexicalSideError`'s message; here a
    bad ``--dataset``, exit status 2): nothing is filled into an existing index behind the caller's back."""
    dataset, _ = ensure_train_dev(load_dataset(name))
    folder = INDEXES / f"{name}-zero-shot"
    try:
        index, manifest, encoder = open_index(folder)
    except IndexNotFoundError:
        encoder = BiEncoder.load("default", show_progress=True)
        index, manifest, _ = build_index(dataset, encoder, folder.name, root=INDEXES)
    return index, manifest, encoder, dataset, served_store(folder, "--dataset")


def served_store(folder: Path, param_hint: str) -> DocumentStore:
    """The index's document store with its lexical side, or the service's refusal as a bad ``param_hint``."""
    try:
        return lexical_store(folder)
    except NoLexicalSideError as exc:
        raise typer.BadParameter(str(exc), param_hint=param_hint) from None


def _p50_ms(fn, items) -> float:
    times = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        times.append(1000 * (time.perf_counter() - start))
    return float(np.median(times))


def lexical_rows(name: str, dataset, store: DocumentStore) -> dict:
    queries, qrels = dataset.split_queries("test"), dataset.qrels("test")
    sample = list(queries.values())[:200]
    rows = store.lexical_search(list(queries.values()), 1001)
    fts_run = {q: {d: s for d, s in row if d != q} for q, row in zip(queries, rows, strict=True)}
    with tempfile.TemporaryDirectory() as tmp:  # upsert costs on a copy, never on the served store
        shutil.copy(store.path, Path(tmp) / STORE_FILE)
        scratch = DocumentStore(Path(tmp) / STORE_FILE)
        docs = [(f"new-{i}", doc["title"], doc["text"]) for i, doc in enumerate(list(dataset.corpus.values())[:100])]
        single = _p50_ms(lambda d: scratch.upsert([d]), docs[:20])
        start = time.perf_counter()
        scratch.upsert([(f"batch-{d}", t, x) for d, t, x in docs])
        batch = 1000 * (time.perf_counter() - start)
        scratch.close()
    fts = evaluate_run(qrels, fts_run, METRICS) | {
        "p50_ms": _p50_ms(lambda q: store.lexical_search([q], 10), sample),
        "upsert_1_ms": single, "upsert_100_ms": batch}
    record(name, "test", "lexical-fts5", "sqlite fts5 porter/unicode61", fts, 0.0)
    start = time.perf_counter()
    bm25 = Bm25Retriever(dataset)
    rebuild = 1000 * (time.perf_counter() - start)
    bm25_run = bm25.search(queries, k=1000)
    bm = evaluate_run(qrels, bm25_run, METRICS) | {
        "p50_ms": _p50_ms(lambda q: bm25.search({"q": q}, k=10), sample),
        "upsert_1_ms": rebuild, "upsert_100_ms": rebuild}  # static: any change re-indexes the corpus
    record(name, "test", "lexical-bm25s", "bm25s (static; an upsert re-indexes)", bm, 0.0)
    return {"lexical-fts5": fts_run, "lexical-bm25s": bm25_run}


def relevance_model(index, encoder, dataset, k: int = 100) -> RelevanceModel:
    """The Cosine Adapter as ``retriever calibrate`` fits it by default (mapping chosen on dev)."""
    return fit_relevance_model(index, encoder, dataset, k).model


def hybrid_rows(name, index, encoder, dataset, store, model_name: str, runs: dict, tag: str = "") -> None:
    """Every fusion's row (method ``hybrid-<fusion><tag>``); filtering rows for the zero-shot model only."""
    adapter = relevance_model(index, encoder, dataset)
    start = time.perf_counter()
    side = fit_hybrid_side(index, store, encoder, dataset, adapter)
    fit_seconds = time.perf_counter() - start
    params = fusion_params({"hybrid": side})
    test = labelled_candidates(index, store, encoder, dataset, "test", params.depth, only_judged_positive=False)
    qrels = dataset.qrels("test")
    relevance = calibrated_relevance(test.candidates, test.queries, test.vectors, adapter, params.calibration)
    queries = dataset.split_queries("test")
    sample = list(queries.values())[:100]
    vectors = dict(zip(sample, encoder.encode_queries(sample), strict=True))  # search cost, encoding apart
    encode_p50 = _p50_ms(lambda q: encoder.query._encode_model([q], "query"), sample[:30])  # uncached
    dense_p50 = _p50_ms(lambda q: search(index, encoder, [q], 10, query_vectors=vectors[q][None]), sample)
    for fusion in ("rrf", "convex", "tmm", "calibrated"):
        alpha = side["alpha_tmm"] if fusion == "tmm" else side["alpha"]
        run = to_run(test, fuse(test.candidates, fusion, alpha, relevance))
        runs[f"hybrid-{fusion}{tag}"] = run
        one = fusion_params({"hybrid": side}, fusion=fusion)
        p50 = _p50_ms(lambda q, p=one: search(index, encoder, [q], 10, mode="hybrid", store=store,
                                               relevance_model=adapter, params=p, query_vectors=vectors[q][None]),
                      sample)
        extra = {"alpha": alpha} if fusion in ("convex", "tmm") else {}
        record(name, "test", f"hybrid-{fusion}{tag}", model_name, evaluate_run(qrels, run, METRICS) | extra | {
            "dev_ndcg@10": side["dev_ndcg@10"][fusion], "depth": params.depth, "search_p50_ms": p50,
            "dense_search_p50_ms": dense_p50, "encode_p50_ms": encode_p50}, fit_seconds)
        write_trec_run(run, RUNS / f"{name}-test-hybrid-{fusion}{tag}.trec", tag=f"hybrid-{fusion}{tag}")
    write_trec_run(runs["lexical-fts5"], RUNS / f"{name}-test-lexical-fts5.trec", tag="lexical-fts5")
    write_significance(name, "test", f"hybrid{tag}", qrels, runs)
    if not tag:
        filtering_rows(name, index, encoder, dataset, store, adapter, params, model_name)


def filtering_rows(name, index, encoder, dataset, store, adapter, params, model_name: str) -> None:
    """Fused relevance vs the Cosine Adapter alone, on the same candidates: each test query's hybrid top-K."""
    for k in (100, 1000):
        test = labelled_candidates(index, store, encoder, dataset, "test", k)
        fused = calibrated_relevance(test.candidates, test.queries, test.vectors, adapter, params.calibration)
        c = test.candidates
        cosines = np.where(np.isnan(c.dense), -1.0, c.dense).astype(np.float32)
        dense_prob = adapter.relevance(test.vectors, cosines)
        order = np.argsort(-np.where(c.pad, -np.inf, fused), axis=1, kind="stable")[:, :k]
        valid, labels = ~np.take_along_axis(c.pad, order, 1), np.take_along_axis(test.labels, order, 1)
        for method, scores in (("filter-hybrid-calibrated", np.take_along_axis(fused, order, 1)),
                               ("filter-cosine-adapter", np.take_along_axis(dense_prob, order, 1))):
            metrics = filter_metrics(scores, labels, valid)
            record(name, "test", method, f"{model_name} (k={k}, hybrid candidates)",
                   metrics.as_dict() | {"k": k, "positives_in_candidates": int(labels[valid].sum())}, 0.0)


def trained_rows(name: str, model_path: str) -> None:
    """Hybrid rows with a trained query tower over the zero-shot index (its document tower must match)."""
    index, manifest, _, data, store = zero_shot(name)
    encoder = BiEncoder.load(model_path, show_progress=True)
    index, manifest, encoder = open_index(INDEXES / f"{name}-zero-shot", encoder)  # refuses another document tower
    queries = data.split_queries("test")
    label = Path(model_path).name
    rows = store.lexical_search(list(queries.values()), 1001)
    fts_run = {q: {d: s for d, s in row if d != q} for q, row in zip(queries, rows, strict=True)}
    dense = retrieve(index, encoder, queries, k=1000)
    runs = {f"dense-{label}": dense, "lexical-fts5": fts_run}
    hybrid_rows(name, index, encoder, data, store, label, runs, tag=f"-{label.removeprefix(name + '-')}")


def main(dataset: list[str] = typer.Option(["scifact", "nfcorpus"]),
         dense_model: list[str] = typer.Option([], help="DATASET=PATH: also hybrid rows with this trained "
                                                        "dense model (document tower = the zero-shot one)."),
         zero_shot_rows: bool = typer.Option(True, help="The lexical, zero-shot hybrid and filtering rows.")) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    trained = dict(item.split("=", 1) for item in dense_model)
    for name in dataset:
        if zero_shot_rows:
            index, manifest, encoder, data, store = zero_shot(name)
            runs = lexical_rows(name, data, store)
            runs = {"zero-shot": retrieve(index, encoder, data.split_queries("test"), k=1000), **runs}
            hybrid_rows(name, index, encoder, data, store, manifest.model_id.split("/")[-1], runs)
        if name in trained:
            trained_rows(name, trained[name])


if __name__ == "__main__":
    typer.run(main)
