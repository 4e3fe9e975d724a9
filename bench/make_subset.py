"""A small BEIR subset of a dataset, for quick end-to-end checks of the benchmark scripts (``DRY=1``).

    python -m bench.make_subset scifact /tmp/dry/data/scimini --queries 40 --documents 400
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer

from retriever.atomic import atomic_write_text
from retriever.data import load_dataset


def main(source: str, target: Path, queries: int = typer.Option(40), documents: int = typer.Option(400),
         seed: int = typer.Option(42)) -> None:
    data = load_dataset(source)
    rng = np.random.default_rng(seed)
    keep_docs: set[str] = set()
    kept_qrels: dict[str, dict] = {}
    for split, qrels in data.file_qrels.items():
        qids = sorted(qrels)
        chosen = [qids[i] for i in np.sort(rng.choice(len(qids), min(queries, len(qids)), replace=False))]
        kept_qrels[split] = {q: qrels[q] for q in chosen}
        keep_docs |= {d for q in chosen for d in qrels[q]}
    others = sorted(set(data.doc_ids) - keep_docs)
    keep_docs |= set(rng.choice(others, max(0, min(len(others), documents - len(keep_docs))), replace=False).tolist())
    (target / "qrels").mkdir(parents=True, exist_ok=True)
    atomic_write_text(target / "corpus.jsonl", "".join(
        json.dumps({"_id": d, **data.corpus[d]}) + "\n" for d in sorted(keep_docs)))
    used = {q for qrels in kept_qrels.values() for q in qrels}
    atomic_write_text(target / "queries.jsonl", "".join(
        json.dumps({"_id": q, "text": data.queries[q]}) + "\n" for q in sorted(used)))
    for split, qrels in kept_qrels.items():
        rows = [f"{q}\t{d}\t{r}" for q, docs in qrels.items() for d, r in docs.items()]
        lines = ["query-id\tcorpus-id\tscore", *rows]
        atomic_write_text(target / "qrels" / f"{split}.tsv", "\n".join(lines) + "\n")
    typer.echo(f"{target}: {len(keep_docs)} documents, {len(used)} queries")


if __name__ == "__main__":
    typer.run(main)
