"""Paired t-tests between saved TREC runs of ``bench/runs/`` (runs trained by separate bench invocations,
e.g. a temperature sweep against the baselines), and :func:`paired_test` for one run against its
baseline (the ``p_vs_<baseline>`` column of a bench record).

    python -m bench.significance --dataset scifact --label mw-tau-sweep \
        --run scifact-test-zero-shot --run scifact-test-contrastive --run scifact-test-mw \
        --run scifact-mw-tau0.05-test --run scifact-mw-tau0.1-test
"""

from __future__ import annotations

import typer

from bench.results import ROOT, write_significance
from retriever.data import load_dataset
from retriever.evaluate.metrics import read_trec_run

RUNS = ROOT / "bench" / "runs"


def paired_test(qrels, run, baseline, metric: str = "ndcg@10") -> dict[str, float]:
    """Two-sided paired t-test of ``run`` against ``baseline`` on ``metric`` over every judged query (a query
    missing from a run scores 0): ``{delta, p}``. Records store ``p`` as a string with two significant
    digits: the results file rounds floats to five decimals, which would turn p = 3e-8 into 0."""
    import numpy as np
    from ranx import Qrels, Run, evaluate
    from scipy.stats import ttest_rel

    judged = {q: {d: int(r) for d, r in docs.items()} for q, docs in qrels.items() if any(docs.values())}
    per_query = []
    for scores in (run, baseline):
        filled = {q: dict(scores.get(q) or {"__none__": 0.0}) for q in judged}
        per_query.append(evaluate(Qrels(judged), Run(filled), metric, return_mean=False, make_comparable=True))
    test = ttest_rel(per_query[0], per_query[1])
    if np.isnan(test.pvalue):  # identical runs
        return {"delta": 0.0, "p": 1.0}
    return {"delta": float(per_query[0].mean() - per_query[1].mean()), "p": float(test.pvalue)}


def save_run(run, name: str) -> None:
    """``bench/runs/<name>.trec``, for a later ``python -m bench.significance``."""
    from retriever.evaluate import write_trec_run

    RUNS.mkdir(parents=True, exist_ok=True)
    write_trec_run(run, RUNS / f"{name}.trec", tag=name)


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
