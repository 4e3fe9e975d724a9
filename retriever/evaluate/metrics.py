"""Ranking metrics through ranx, TREC run files and paired significance tests."""

from __future__ import annotations

from pathlib import Path

from retriever.atomic import atomic_write_text
from retriever.types import Qrels, Run

DEFAULT_METRICS = ("ndcg@10", "mrr@10", "recall@100", "map@100")


def _ranx(qrels: Qrels, run: Run, name: str = "run"):
    from ranx import Qrels as RanxQrels  # CLI start-up: ranx compiles with numba
    from ranx import Run as RanxRun  # CLI start-up

    judged = {q: docs for q, docs in qrels.items() if docs}
    # A query that retrieved nothing still counts, with a zero score.
    full_run = {q: run.get(q) or {"__none__": 0.0} for q in judged}
    return RanxQrels(judged), RanxRun(full_run, name=name)


def evaluate_run(qrels: Qrels, run: Run, metrics: tuple[str, ...] = DEFAULT_METRICS) -> dict[str, float]:
    """Mean of each metric over the judged queries; unjudged queries in the run are ignored."""
    from ranx import evaluate  # CLI start-up: ranx compiles with numba

    ranx_qrels, ranx_run = _ranx(qrels, run)
    scores = evaluate(ranx_qrels, ranx_run, list(metrics), make_comparable=True)
    if isinstance(scores, float):
        scores = {metrics[0]: scores}
    return {m: float(v) for m, v in scores.items()}


def compare_runs(qrels: Qrels, runs: dict[str, Run], metrics: tuple[str, ...] = DEFAULT_METRICS,
                 stat_test: str = "student", max_p: float = 0.05):
    """ranx's paired significance report (superscripts mark significant wins)."""
    from ranx import compare  # CLI start-up: ranx compiles with numba

    judged = _ranx(qrels, {})[0]
    ranx_runs = [_ranx(qrels, run, name)[1] for name, run in runs.items()]
    return compare(judged, ranx_runs, list(metrics), stat_test=stat_test, max_p=max_p, make_comparable=True)


def write_trec_run(run: Run, path: Path, tag: str = "retriever") -> None:
    """TREC format: ``qid Q0 docid rank score tag``, ranked by descending score."""
    lines = []
    for qid, docs in run.items():
        ranked = sorted(docs.items(), key=lambda item: -item[1])
        lines.extend(f"{qid} Q0 {did} {rank} {score:.6f} {tag}" for rank, (did, score) in enumerate(ranked, 1))
    atomic_write_text(Path(path), "\n".join(lines) + "\n")


def read_trec_run(path: Path) -> Run:
    run: Run = {}
    for line in Path(path).read_text().splitlines():
        qid, _, did, _, score, *_ = line.split()
        run.setdefault(qid, {})[did] = float(score)
    return run
