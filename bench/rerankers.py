"""Issue 7: rerankers, SFT versus listwise contrastive, for a cross-encoder and a yes/no causal LM.

    python -m bench.rerankers --dataset scifact --arch cross-encoder \
        --first-stage scifact-zero-shot --first-stage scifact-adore-star
    python -m bench.rerankers --dataset scifact --arch causal-lm --objective none --objective sft \
        --objective cl --max-groups 64 --batch-size 2 --max-length 192 --max-queries 30 --rerank-depth 20

Negatives for training are mined once from the zero-shot index (``models/<dataset>-negatives.json``); each
group holds one positive, ``--n-hard`` of the top-30 mined negatives and ``--n-easy`` random documents.
``--objective none`` scores with the untrained start model (meaningful for the causal LM only);
``--objective random`` scores every candidate with a seeded random number (the floor a reranker that
learned nothing reaches). Trained
rerankers go to ``models/<dataset>-rerank-<ce|lm>-<objective>/``.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import typer

from bench.common import INDEXES, MODELS, ensure_index, paired_test, sample_test_queries
from bench.results import ROOT, record
from retriever.data import load_dataset
from retriever.evaluate import evaluate_run
from retriever.pipeline import open_index, rerank_evaluation, retrieve
from retriever.rerank import load_reranker
from training.negatives import MiningParams, mine_hard_negatives
from training.rerank_config import RerankerConfig
from training.rerank_plots import plot_gradient_weights
from training.rerank_trainer import train_reranker

logger = logging.getLogger("bench.rerankers")
SHORT = {"cross-encoder": "ce", "causal-lm": "lm"}


class RandomReranker:
    """Seeded random scores: the nDCG of the first stage's top ``depth`` in a random order."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def score_pairs(self, queries: list[str], documents: list[str]) -> np.ndarray:
        return self.rng.random(len(queries))


def ensure_negatives(data, dataset: str, seed: int = 42):
    path = MODELS / f"{dataset}-negatives.json"
    if not path.is_file():
        index, manifest, encoder, _ = ensure_index(data, f"{dataset}-zero-shot", "default")
        mine_hard_negatives(data, "train", index, manifest, encoder, MiningParams(top_k=200, seed=seed)).save(path)
    return path


def reranker_folder(dataset: str, short: str, objective: str, tag: str = ""):
    return MODELS / f"{dataset}-rerank-{short}-{objective}{'-' + tag if tag else ''}"




def best_trained_index(dataset: str) -> str:
    """The trained retriever of ``dataset`` with the best test nDCG@10 in the results file whose index is here."""
    from bench.results import hardware, load

    rows = [r for r in load() if r["dataset"] == dataset and r["split"] == "test" and "auc_global" in r["metrics"]
            and r["method"] not in ("zero-shot", "bm25") and "tau=" not in r["model"]
            and r.get("hardware") == hardware() and (INDEXES / f"{dataset}-{r['method']}").is_dir()]
    if not rows:
        raise typer.BadParameter(f"no trained retriever of {dataset} with an index: train one first")
    return f"{dataset}-{max(rows, key=lambda r: r['metrics']['ndcg@10'])['method']}"


def main(
    dataset: str = typer.Option("scifact"),
    arch: str = typer.Option("cross-encoder", help="cross-encoder | causal-lm"),
    objectives: list[str] = typer.Option(["sft", "cl"], "--objective",
                                         help="sft | cl | none (untrained) | random (seeded random scores)"),
    first_stages: list[str] = typer.Option([], "--first-stage", help="Index names (default: zero-shot)."),
    max_groups: int | None = typer.Option(None),
    batch_size: int = typer.Option(8),
    learning_rate: float = typer.Option(2e-5),
    head_learning_rate: float | None = typer.Option(None, help="Cross-encoder head lr (default: the trainer's)."),
    epochs: float = typer.Option(1.0),
    max_length: int = typer.Option(256),
    n_hard: int = typer.Option(3),
    n_easy: int = typer.Option(4),
    rerank_depth: int = typer.Option(100),
    max_queries: int | None = typer.Option(None, help="Rerank only this many test queries (seeded)."),
    seed: int = typer.Option(42),
    tag: str = typer.Option("", help="Suffix of the model folders and result labels (recipe variants)."),
    max_steps: int = typer.Option(-1, help="Cap on training steps (quick checks)."),
    rows: str = typer.Option("pair", help="pair: a group per labelled pair | query: a group per training query, "
                             "positive by grade (NFCorpus)"),
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    data = load_dataset(dataset)
    negatives = ensure_negatives(data, dataset, seed) if set(objectives) - {"random", "none"} else None
    short = SHORT[arch]
    trained: dict[str, tuple[str, dict]] = {}
    logs = {}
    for objective in objectives:
        if objective == "random":
            trained[objective] = ("random", {"train_seconds": 0.0})
            continue
        if objective == "none":
            trained[objective] = (RerankerConfig(arch=arch).start_model, {"train_seconds": 0.0})
            continue
        output = reranker_folder(dataset, short, objective, tag)
        if not (output / "train_summary.json").is_file():
            train_reranker(RerankerConfig(
                arch=arch, objective=objective, data=dataset, negatives_file=negatives, n_hard=n_hard, n_easy=n_easy,
                max_groups=max_groups, batch_size=batch_size, learning_rate=learning_rate, epochs=epochs,
                **({"head_learning_rate": head_learning_rate} if head_learning_rate else {}),
                max_length=max_length, seed=seed, output=output, resume=(output / "checkpoints").is_dir(), rows=rows,
                early_stopping_patience=None, max_steps=max_steps))
        trained[objective] = (str(output), json.loads((output / "train_summary.json").read_text()))
    for objective in ("sft", "cl"):  # one plot per recipe, with the other objective's run when it exists
        log = reranker_folder(dataset, short, objective, tag) / "log.jsonl"
        if log.is_file() and any(o not in ("none", "random") for o in objectives):
            logs[f"{short} {objective}"] = log
    if logs:
        suffix = f"_{tag}" if tag else ""
        plot_gradient_weights(logs, ROOT / "docs" / f"rerank_gradient_weights_{dataset}_{short}{suffix}.png")

    qrels = data.qrels("test")
    qids = sample_test_queries(data, max_queries, seed)
    for first_stage in first_stages or [f"{dataset}-zero-shot"]:
        if first_stage == "best":
            first_stage = best_trained_index(dataset)
        index, _, encoder = open_index(INDEXES / first_stage)
        run = retrieve(index, encoder, {q: data.queries[q] for q in qids}, k=rerank_depth)
        base = evaluate_run({q: qrels[q] for q in qids}, run, ("ndcg@10", "mrr@10"))
        for objective, (path, summary) in trained.items():
            reranker = RandomReranker(seed) if path == "random" else load_reranker(path, max_length=max_length)
            report = rerank_evaluation(data, "test", run, reranker, rerank_depth)
            test = paired_test({q: qrels[q] for q in qids}, report.run, run)
            metrics = report.metrics | {
                "p_vs_first_stage": f"{test['p']:.2g}", "delta_vs_first_stage": test["delta"], "rows": rows,
                "first_stage_ndcg@10": base["ndcg@10"], "first_stage_mrr@10": base["mrr@10"],
                "depth": rerank_depth, "n_queries": len(qids), "ms_per_query": report.ms_per_query,
                "train_seconds": summary["train_seconds"], "max_length": max_length}
            if "steps" in summary:
                metrics |= {"steps": summary["steps"], "train_groups": summary["groups"]}
            short_here = "" if objective == "random" else f"{short}-"
            label = f"{first_stage}>>{short_here}{objective}" + (f" [{tag}]" if tag else "")
            label += f" ({max_groups} groups)" if max_groups and objective != "none" else ""
            record(dataset, "test", f"rerank-{short_here}{objective}", label, metrics,
                   report.seconds + summary["train_seconds"])
            logger.info("%s >> %s %s: %s", first_stage, short, objective, metrics)


if __name__ == "__main__":
    typer.run(main)
