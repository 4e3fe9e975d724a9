"""Issue 19's trained-model goal: tune the hybrid configuration on the dev split only, then score it on test.

    python -m bench.hybrid_tune --dataset scifact --dense-model scifact=/work/models/scifact-adore
    python -m bench.hybrid_tune --dataset nfcorpus --dense-model nfcorpus=/work/models/nfcorpus-adore
    python -m bench.hybrid_tune --dataset scifact --index scifact=indexes/scifact-mnrl-hybrid

Per dataset and dense model (``zero-shot``, a trained query tower over the zero-shot document vectors, as
in ``bench.hybrid``, or with ``--index`` a fully trained model's own index with its lexical side), every
configuration of a small grid is scored by nDCG@10 on **dev**:

- candidates per side (``--depth``, default 100, 200, 400);
- the lexical side: the index's FTS5 table (title and body as one column, the served default) or, at depth
  100, a scratch two-column FTS5 table (title, body) ranked by ``bm25(fts, w_title, 1)`` for each
  ``--title-weight`` (weights 1 and 1 give exactly the one-column scores: FTS5 sums weighted frequencies
  over one document length);
- the fusion: RRF with each ``--rrf-k``, the convex combination under min-max (over all candidates, or over
  each side's own hits), theoretical-min-max and z-score normalisation with the weight on a 0.05 grid, the
  calibrated fusion (fitted on train), and with a trained model ``tmm3`` / ``zscore3``: a three-way
  convex combination of the trained model's cosine, the zero-shot model's cosine (a query tower: over the
  same cached document vectors; a full model: the zero-shot index's vectors of the same candidates) and
  BM25, weights on a 0.05 simplex grid.

The configuration with the best dev nDCG@10 is then run once on **test** and recorded as
``hybrid-tuned-<model>`` with the choice in its metrics, paired t-tests against its dense run and against
``lexical-fts5`` (the served lexical side), and every dev score in the log. The test split never takes part
in a choice.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import typer

from bench.common import paired_test
from bench.hybrid import METRICS, relevance_model, served_store, zero_shot
from bench.results import record
from bench.two_column_store import two_column_copy
from retriever.docstore import DocumentStore
from retriever.encoders import BiEncoder
from retriever.evaluate import evaluate_run
from retriever.fusion import convex, minmax, rrf
from retriever.hybrid_fit import dev_ndcg, fit_calibration, labelled_candidates, to_run
from retriever.pipeline import open_index, retrieve
from retriever.search import calibrated_relevance

logger = logging.getLogger("bench.hybrid_tune")
ALPHAS = np.round(np.linspace(0.0, 1.0, 21), 2)


def zscore(scores: np.ndarray) -> np.ndarray:
    """Per row ``(s - mean) / std`` over the retrieved candidates; not retrieved (NaN) takes the row's min."""
    with np.errstate(all="ignore"):
        mean = np.nanmean(scores, axis=1, keepdims=True)
        std = np.nanstd(scores, axis=1, keepdims=True)
        z = (scores - mean) / np.where(std > 0, std, 1.0)
        low = np.nanmin(z, axis=1, keepdims=True)
    return np.nan_to_num(np.where(np.isnan(z), low, z), nan=0.0)


def fused_scores(lc, fusion: str, value, relevance: np.ndarray | None, second: np.ndarray | None = None):
    c = lc.candidates
    if fusion == "rrf":
        return rrf(np.where(c.in_dense, c.dense, np.nan), np.where(c.in_lexical, c.lexical, np.nan), k=int(value))
    if fusion == "zscore":
        return value * zscore(c.dense) + (1 - value) * zscore(c.lexical)
    if fusion == "minmax-retrieved":  # normalise over each side's own hits only (Bruch et al.'s variant)
        d, lx = np.where(c.in_dense, c.dense, np.nan), np.where(c.in_lexical, c.lexical, np.nan)
        return value * minmax(d) + (1 - value) * minmax(lx)
    if fusion == "calibrated":
        return relevance
    if fusion in ("tmm3", "zscore3"):  # (trained tower, zero-shot tower) weights; BM25 gets the rest
        a, b = value
        norm = zscore if fusion == "zscore3" else None
        if norm is None:
            return (a * minmax(c.dense, -1.0) + b * minmax(second, -1.0)
                    + (1 - a - b) * minmax(c.lexical, 0.0))
        return a * norm(c.dense) + b * norm(second) + (1 - a - b) * norm(c.lexical)
    return convex(c.dense, c.lexical, value, theoretical=fusion == "tmm")


def grid(rrf_ks: list[int], three_way: bool) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = [("rrf", float(k)) for k in rrf_ks]
    for fusion in ("convex", "tmm", "zscore", "minmax-retrieved"):
        out += [(fusion, float(a)) for a in ALPHAS]
    if three_way:
        simplex = [(float(a), float(b)) for a in ALPHAS for b in ALPHAS if a + b <= 1.0 + 1e-9]
        out += [(f, w) for f in ("tmm3", "zscore3") for w in simplex]
    return out + [("calibrated", 0.0)]


def second_tower(lc, tower) -> np.ndarray | None:
    """Every candidate's cosine to the zero-shot model's query vector, over ``tower = (index, encoder)``'s
    document vectors (the zero-shot index: the candidates' ids are looked up there)."""
    if tower is None:
        return None
    index, encoder = tower
    vectors = encoder.encode_queries(lc.queries)
    out = np.full(lc.candidates.dense.shape, np.nan)
    for i, ids in enumerate(lc.candidates.ids):
        out[i, : len(ids)] = index.vectors(ids) @ vectors[i]
    return out


def sweep(dataset, index, encoder, stores: dict, adapter, cells, rrf_ks, tower) -> tuple[dict, dict]:
    """Dev nDCG@10 of every ``(depth, lexical, fusion, value)``; also each cell's calibrated fit."""
    qrels = dataset.qrels("dev")
    scores, fits = {}, {}
    for depth, lexical in cells:
        start = time.perf_counter()
        store = stores[lexical]
        dev = labelled_candidates(index, store, encoder, dataset, "dev", depth)
        train = labelled_candidates(index, store, encoder, dataset, "train", depth)
        calibration = fit_calibration(train, adapter)
        relevance = calibrated_relevance(dev.candidates, dev.queries, dev.vectors, adapter, calibration)
        second = second_tower(dev, tower)
        fits[(depth, lexical)] = calibration
        for fusion, value in grid(rrf_ks, tower is not None):
            fused = fused_scores(dev, fusion, value, relevance, second)
            scores[(depth, lexical, fusion, value)] = dev_ndcg(dev, qrels, fused)
        best = max((k for k in scores if k[:2] == (depth, lexical)), key=scores.get)
        logger.info("dev depth %d lexical %s: best %s %.4f (%.0f s)", depth, lexical, best[2:], scores[best],
                    time.perf_counter() - start)
    return scores, fits


def lexical_run(store, queries: dict) -> dict:
    rows = [store.lexical_candidates(q, 1000, [])[0] for q in queries.values()]
    return {q: {d: s for d, s in row if d != q} for q, row in zip(queries, rows, strict=True)}


def dense_side(name: str, model_path: str | None, index_folder: str | None, three_way: bool):
    """``(index, manifest, encoder, dataset, store, label, tower)``: the dense model tuned (zero-shot, a query
    tower over the zero-shot index, or a full model's own index) and the zero-shot ``(index, encoder)`` of the
    three-way fusion (None without a trained model or with ``three_way`` off)."""
    index, manifest, encoder, dataset, store = zero_shot(name)
    zero = (index, encoder) if three_way and (model_path or index_folder) else None
    if index_folder:
        folder = Path(index_folder)
        index, manifest, encoder = open_index(folder)
        store = served_store(folder, "--index")
        label = Path(manifest.model_id).name.removeprefix(name + "-")  # the model, not the folder
        return index, manifest, encoder, dataset, store, label, zero
    if model_path:
        encoder = BiEncoder.load(model_path, show_progress=True)
        index, manifest, encoder = open_index(store.path.parent, encoder)  # refuses another document tower
        return index, manifest, encoder, dataset, store, Path(model_path).name.removeprefix(name + "-"), zero
    return index, manifest, encoder, dataset, store, "zero-shot", None


def tune(name: str, model_path: str | None, index_folder: str | None, depths: list[int], title_weights: list[float],
         rrf_ks: list[int], three_way: bool) -> None:
    index, manifest, encoder, dataset, store, label, tower = dense_side(name, model_path, index_folder, three_way)
    served = DocumentStore(store.path, snapshot=True)  # numpy passes: the served path, ~10x faster
    served.refresh_lexical_snapshot()
    start = time.perf_counter()
    adapter = relevance_model(index, encoder, dataset)
    with tempfile.TemporaryDirectory() as tmp:
        stores: dict[str, DocumentStore] = {"one-column": served}
        scratch = two_column_copy(store, Path(tmp)) if title_weights else None
        for weight in title_weights:
            stores[f"title-x{weight:g}"] = scratch.weighted(weight)
        cells = [(d, "one-column") for d in depths] + [(100, f"title-x{w:g}") for w in title_weights]
        dev_scores, fits = sweep(dataset, index, encoder, stores, adapter, cells, rrf_ks, tower)
        best = max(dev_scores, key=dev_scores.get)
        depth, lexical, fusion, value = best
        logger.info("%s %s: dev best %s = %.4f (served default, one column, depth 100, convex 0.45: %s)", name,
                    label, best, dev_scores[best], dev_scores.get((100, "one-column", "convex", 0.45)))
        test = labelled_candidates(index, stores[lexical], encoder, dataset, "test", depth, only_judged_positive=False)
        relevance = (calibrated_relevance(test.candidates, test.queries, test.vectors, adapter, fits[(depth, lexical)])
                     if fusion == "calibrated" else None)
        run = to_run(test, fused_scores(test, fusion, value, relevance, second_tower(test, tower)))
        queries, qrels = dataset.split_queries("test"), dataset.qrels("test")
        dense = retrieve(index, encoder, queries, k=1000)
        lexical_default = lexical_run(served, queries)
        metrics = evaluate_run(qrels, run, METRICS)
        versus = {"dense": paired_test(qrels, run, dense), "lexical": paired_test(qrels, run, lexical_default)}
        if lexical != "one-column":
            chosen_lexical = lexical_run(stores[lexical], queries)
            metrics["lexical_chosen_ndcg@10"] = evaluate_run(qrels, chosen_lexical, ("ndcg@10",))["ndcg@10"]
    for side, test_result in versus.items():
        metrics[f"delta_vs_{side}"] = test_result["delta"]
        metrics[f"p_vs_{side}"] = f"{test_result['p']:.2g}"
    weights = value if isinstance(value, tuple) else (value,)
    metrics |= {"dev_ndcg@10": dev_scores[best], "depth": depth, "lexical": lexical, "fusion": fusion,
                **{f"fusion_value_{i}": w for i, w in enumerate(weights)}, "configs_tried": len(dev_scores),
                "dense_ndcg@10": evaluate_run(qrels, dense, ("ndcg@10",))["ndcg@10"]}
    model = label if label != "zero-shot" else manifest.model_id.split("/")[-1]
    record(name, "test", f"hybrid-tuned-{label}", f"{model} (dev-tuned)", metrics, time.perf_counter() - start)
    logger.info("%s %s test: %s", name, label, metrics)


def main(dataset: list[str] = typer.Option(["scifact", "nfcorpus"]),
         dense_model: list[str] = typer.Option([], help="DATASET=PATH: a trained query tower (document tower = the "
                                                        "zero-shot one); without one, the zero-shot model."),
         index: list[str] = typer.Option([], help="DATASET=FOLDER: a fully trained model's index with a lexical "
                                                  "side (its own document vectors), instead of --dense-model."),
         depth: list[int] = typer.Option([100, 200, 400]),
         title_weight: list[float] = typer.Option([2.0, 4.0], help="Title weights of the two-column table."),
         rrf_k: list[int] = typer.Option([10, 20, 40, 60, 100]),
         three_way: bool = typer.Option(True, help="With a trained tower, also fuse the zero-shot tower's cosine.")
         ) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    trained = dict(item.split("=", 1) for item in dense_model)
    folders = dict(item.split("=", 1) for item in index)
    for name in dataset:
        if name in trained and name in folders:
            raise typer.BadParameter(f"{name}: give --dense-model or --index, not both", param_hint="--index")
        tune(name, trained.get(name), folders.get(name), depth, title_weight, rrf_k, three_way)


if __name__ == "__main__":
    typer.run(main)
