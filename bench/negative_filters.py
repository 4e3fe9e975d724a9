"""How well each hard-negative pool filter removes false negatives, measured where they are known.

    python -m bench.negative_filters --dataset nfcorpus-hidden50 --skip-top 10 --skip-top 30 --skip-top 50 \
        --relative-margin 0.95 --relative-margin 1.0
    python -m bench.negative_filters --dataset nfcorpus-hidden50 --relative-margin 0.95 --margin-reference highest

On ``<name>-hidden<P>`` (bench.cet's derived copy: P% of the train positives unlabelled), negatives are mined
from the zero-shot index with the visible labels only, once per filter (``retriever mine``'s ``skip_top``, and
``relative_margin`` against the lowest or highest positive; top 200 kept). Each pool gets: the share of its
negatives that are hidden positives (``false_negative_rate``, what STAR's uniform draw from the pool sees),
the same share over the pool's first 30 (``false_negative_rate_top30``), negatives kept per query, queries
left with none, and the mean cosine of the kept negatives (how hard they still are). One record per filter,
method ``negative-filter``.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import typer

from bench.cet import prepare
from bench.common import ensure_index
from bench.results import record
from retriever.data import load_dataset
from retriever.data.derive import false_negative_rate
from training.negatives import MiningParams, mine_hard_negatives

logger = logging.getLogger("bench.negative_filters")
TOP_POOL = 30


def pool_statistics(negatives: dict[str, list[str]], hidden: dict[str, set[str]],
                    cosines: dict[str, dict[str, float]]) -> dict[str, float]:
    """The record of one mined pool: false-negative shares, pool sizes, and the kept negatives' mean cosine."""
    sizes = np.array([len(v) for v in negatives.values()])
    kept = [cosines[q][d] for q, docs in negatives.items() for d in docs]
    return {
        "false_negative_rate": false_negative_rate(negatives, hidden),
        "false_negative_rate_top30": false_negative_rate({q: v[:TOP_POOL] for q, v in negatives.items()}, hidden),
        "negatives_per_query": float(sizes.mean()) if len(sizes) else 0.0,
        "queries_without_negatives": int((sizes == 0).sum()),
        "mean_negative_cosine": float(np.mean(kept)) if kept else float("nan"),
    }


def filter_label(params: MiningParams) -> str:
    """A filter's model label: ``unfiltered``, ``skip top 30`` or ``margin 0.95 x lowest positive``."""
    if params.skip_top:
        return f"skip top {params.skip_top}"
    if params.relative_margin is not None:
        return f"margin {params.relative_margin:g} x {params.margin_reference} positive"
    return "unfiltered"


def main(
    dataset: str = typer.Option("nfcorpus-hidden50", help="A derived <name>-hidden<P> dataset (bench.cet's)."),
    skip_top: list[int] = typer.Option([], help="skip_top values to measure (repeatable)."),
    relative_margin: list[float] = typer.Option([], help="relative_margin values to measure (repeatable)."),
    margin_reference: str = typer.Option("lowest", help="The margins' positive: lowest | highest score."),
    seed: int = typer.Option(42),
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    data, base, hidden = prepare(dataset, seed)
    if not hidden:
        raise typer.BadParameter(f"{dataset} has no hidden positives: use a <name>-hidden<P> dataset")
    index, manifest, encoder, _ = ensure_index(load_dataset(base), f"{base}-zero-shot", "default")
    filters = [MiningParams(top_k=200, seed=seed)] + [MiningParams(top_k=200, skip_top=s, seed=seed)
                                                       for s in skip_top]
    filters += [MiningParams(top_k=200, relative_margin=m, seed=seed, margin_reference=margin_reference)
                for m in relative_margin]
    cosines = candidate_cosines(data, index, encoder, 200 + max(skip_top, default=0) + 50)
    for params in filters:
        start = time.perf_counter()
        mined = mine_hard_negatives(data, "train", index, manifest, encoder, params)
        stats = pool_statistics(mined.negatives, hidden, cosines)
        logger.info("%s: %s", filter_label(params), stats)
        record(dataset, "train", "negative-filter", f"all-MiniLM-L6-v2 zero-shot pool, {filter_label(params)}",
               stats | {"top_k": params.top_k}, time.perf_counter() - start)


def candidate_cosines(data, index, encoder, depth: int) -> dict[str, dict[str, float]]:
    """Each train query's zero-shot cosines to its top ``depth`` documents (what mining ranks by)."""
    qids = list(data.qrels("train"))
    result = index.search(encoder.encode_queries([data.queries[q] for q in qids]), depth)
    return {q: dict(zip(ids, map(float, scores), strict=True))
            for q, ids, scores in zip(qids, result.ids, result.scores, strict=True)}


if __name__ == "__main__":
    typer.run(main)
