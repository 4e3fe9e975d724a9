"""Paired t-tests between saved TREC runs of ``bench/runs/`` (runs trained by separate bench invocations,
e.g. a temperature sweep against the baselines), and :func:`paired_test` for one run against its
baseline (the ``p_vs_<baseline>`` column of a bench record).

    python -m bench.significance --dataset scifact --label mw-tau-sweep \
        --run scifact-test-zero-shot --run scifact-test-contrastive --run scifact-test-mw \
        --run scifact-mw-tau0.05-test --run scifact-mw-tau0.1-test
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
) -> None:
    missing = [name for name in runs if not (RUNS / f"{name}.trec").is_file()]
    if missing:
        raise typer.BadParameter(f"no run file bench/runs/<name>.trec for: {', '.join(missing)}")
    qrels = load_dataset(dataset).qrels(split)
    path = write_significance(dataset, split, label, qrels, {name: read_trec_run(RUNS / f"{name}.trec")
                                                            for name in runs})
    typer.echo(path.read_text())


if __name__ == "__main__":
    typer.run(main)
