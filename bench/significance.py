"""Paired t-tests between saved TREC runs of ``bench/runs/`` (runs trained by separate bench invocations,
e.g. a temperature sweep against the baselines), and :func:`paired_test` for one run against its
baseline (the ``p_vs_<baseline>`` column of a bench record).

    python -m bench.significance --dataset scifact --label mw-tau-sweep \
        --run scifact-test-zero-shot --run scifact-test-contrastive --run scifact-test-mw \
        --run scifact-mw-tau0.05-test --run scifact-mw-tau0.1-test
    python -m bench.significance --dataset scifact --label lm-rerankers-100q --sampled \
        --run scifact-test-rerank-lm-none-scifact-zero-shot --run scifact-test-rerank-lm-sft-scifact-zero-shot

``--sampled``: the runs cover a seeded sample of the queries (``--max-queries`` of a rerank bench), so only the
first run's queries are compared, not every judged query with the missing ones scored 0.
"""

from __future__ import annotations

import typer

from bench.common import RUNS
from bench.results import write_significance
from retriever.data import load_dataset
from retriever.evaluate.metrics import read_trec_run


def main(
    dataset: str = typer.Option(...),
    label: str = typer.Option(..., help="Names docs/significance/<dataset>_<split>_<label>.md."),
    runs: list[str] = typer.Option(..., "--run", help="Run file stems in bench/runs/."),
    split: str = typer.Option("test"),
    sampled: bool = typer.Option(False, help="Compare only the queries of the first run (a sampled rerank run)."),
) -> None:
    missing = [name for name in runs if not (RUNS / f"{name}.trec").is_file()]
    if missing:
        raise typer.BadParameter(f"no run file bench/runs/<name>.trec for: {', '.join(missing)}")
    qrels = load_dataset(dataset).qrels(split)
    loaded = {name: read_trec_run(RUNS / f"{name}.trec") for name in runs}
    if sampled:
        qrels = {q: docs for q, docs in qrels.items() if q in loaded[runs[0]]}
    path = write_significance(dataset, split, label, qrels, loaded)
    typer.echo(path.read_text())


if __name__ == "__main__":
    typer.run(main)
