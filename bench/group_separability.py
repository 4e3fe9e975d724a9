"""How separable the reranker training groups are: the zero-shot bi-encoder's cosine of each group's positive
against its mined hard and random easy negatives, with the groups built exactly as ``bench.rerankers``
builds them (``training.rerank_data.build_groups``).

A group whose positive scores below its hard negatives for a model that already ranks the test lists well
is a group whose label says little: the win rates say how much signal a reranker's loss can find there.
Where the training qrels are graded, each grade gets a row of its own too (BEIR's NFCorpus train split is
not graded). Reads cached document vectors (no corpus encode).

    python -m bench.group_separability --dataset nfcorpus --rows query --max-groups 640
"""

from __future__ import annotations

import logging

import numpy as np
import typer

from bench.common import INDEXES, MODELS, rows_label
from bench.results import record
from retriever.data import load_dataset
from retriever.pipeline import open_index
from training.negatives import read_negatives
from training.rerank_data import EASY, HARD, build_groups

logger = logging.getLogger("bench.group_separability")


def group_scores(index, encoder, data, groups) -> np.ndarray:
    """``[G, 1 + n_hard + n_easy]`` cosines, each group's positive first (as its documents are ordered)."""
    queries = encoder.encode_queries([data.queries[q] for q in groups.query_ids])
    flat = [d for docs in groups.docs for d in docs]
    vectors = index.vectors(flat)
    if vectors is None:
        raise typer.BadParameter("this index keeps no vectors: rebuild it with a Flat spec")
    vectors = vectors.reshape(len(groups), -1, vectors.shape[-1])
    return np.einsum("gd,gkd->gk", queries, vectors)


def separability(scores: np.ndarray, kinds: np.ndarray) -> dict[str, float]:
    """Win rates of the positive over each negative kind, and its mean rank (1 = top) within the group."""
    wins = scores[:, :1] > scores
    return {"win_vs_hard": float(wins[:, kinds == HARD].mean()), "win_vs_easy": float(wins[:, kinds == EASY].mean()),
            "positive_rank": float((scores[:, 1:] >= scores[:, :1]).sum(axis=1).mean() + 1),
            "n_groups": len(scores)}


def main(dataset: str = typer.Option("scifact"), rows: str = typer.Option("pair", help="pair | query"),
         max_groups: int | None = typer.Option(640), n_hard: int = typer.Option(3), n_easy: int = typer.Option(4),
         seed: int = typer.Option(42)) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    data = load_dataset(dataset)
    path = MODELS / f"{dataset}-negatives.json"
    if not path.is_file():
        raise typer.BadParameter(f"no {path}: bench.rerankers mines it on its first training run")
    negatives = read_negatives(path).negatives
    groups = build_groups(data, "train", negatives, n_hard, n_easy, max_groups=max_groups, seed=seed, rows=rows)
    index, _, encoder = open_index(INDEXES / f"{dataset}-zero-shot")
    scores = group_scores(index, encoder, data, groups)
    kinds = groups.kinds[0]
    qrels = data.qrels("train")
    grades = np.array([qrels[q][docs[0]] for q, docs in zip(groups.query_ids, groups.docs, strict=True)])
    label = f"zero-shot cosine, {len(groups)} train groups{rows_label(rows)}"
    levels = sorted(set(grades.tolist()))
    for grade in [None, *(levels if len(levels) > 1 else [])]:
        keep = np.ones(len(grades), bool) if grade is None else grades == grade
        metrics = separability(scores[keep], kinds)
        name = label + ("" if grade is None else f", positives of grade {grade}")
        record(dataset, "train", "group-separability", name, metrics, 0.0)
        logger.info("%s: %s", name, metrics)


if __name__ == "__main__":
    typer.run(main)
