"""Derived datasets for controlled experiments: the same corpus and queries with part of the train
positives hidden (unlabelled), to make pooling bias, i.e. false negatives, visible and measurable."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from retriever.atomic import atomic_write_text
from retriever.data.beir_loader import BeirDataset, read_qrels

HIDDEN_FILE = "hidden_positives.tsv"


def _write_qrels(path: Path, qrels: dict[str, dict[str, int]]) -> None:
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{r}" for q, docs in qrels.items() for d, r in docs.items()]
    atomic_write_text(path, "\n".join(lines) + "\n")


def hide_positives(dataset: BeirDataset, output: Path, fraction: float = 0.5, seed: int = 42,
                   split: str = "train") -> Path:
    """Write a BEIR folder at ``output`` whose ``split`` qrels lack a seeded ``fraction`` of the positive
    pairs. Corpus, queries and the other splits' qrels are linked, not copied. The hidden pairs go to
    ``hidden_positives.tsv`` beside (not inside) ``qrels/``: loaders and trainers never read them; only an
    evaluation of false negatives does (:func:`read_hidden_positives`)."""
    if not 0 < fraction < 1:
        raise ValueError("fraction must be between 0 and 1")
    qrels = dataset.file_qrels[split]
    pairs = [(q, d) for q, docs in qrels.items() for d, rel in docs.items() if rel > 0]
    hidden_idx = np.random.default_rng(seed).choice(len(pairs), int(round(fraction * len(pairs))), replace=False)
    hidden = {pairs[i] for i in hidden_idx.tolist()}
    kept: dict[str, dict[str, int]] = {}
    for q, docs in qrels.items():
        rest = {d: r for d, r in docs.items() if (q, d) not in hidden}
        if rest:
            kept[q] = rest
    output = Path(output)
    shutil.rmtree(output, ignore_errors=True)
    (output / "qrels").mkdir(parents=True)
    source = Path(dataset.path).resolve()
    for name in ("corpus.jsonl", "queries.jsonl"):
        os.symlink(source / name, output / name)
    for other in dataset.file_qrels:
        if other != split:
            os.symlink(source / "qrels" / f"{other}.tsv", output / "qrels" / f"{other}.tsv")
    _write_qrels(output / "qrels" / f"{split}.tsv", kept)
    hidden_qrels: dict[str, dict[str, int]] = {}
    for q, d in sorted(hidden):
        hidden_qrels.setdefault(q, {})[d] = qrels[q][d]
    _write_qrels(output / HIDDEN_FILE, hidden_qrels)
    return output


def read_hidden_positives(folder: Path) -> dict[str, set[str]]:
    path = Path(folder) / HIDDEN_FILE
    return {q: set(docs) for q, docs in read_qrels(path).items()} if path.is_file() else {}


def false_negative_rate(negatives: dict[str, list[str]], hidden: dict[str, set[str]]) -> float:
    """Share of mined negatives that are in fact hidden positives of their query."""
    total = sum(len(v) for v in negatives.values())
    false = sum(len(set(v) & hidden.get(q, set())) for q, v in negatives.items())
    return false / total if total else 0.0
