"""Issue 5: CET against false negatives, for the bi-encoder (STAR pairs) and the cross-encoder reranker.

    python -m bench.cet --dataset nfcorpus-hidden50 --max-pairs 20000 --max-groups 4000
    python -m bench.cet --dataset scifact --part bi --method hn-cet --epochs 3   # against STAR's 3-epoch run
    python -m bench.cet --dataset nfcorpus-hidden50 --part bi --rows query   # one row per train query per epoch

``<name>-hidden<P>`` derives a copy of ``<name>`` with P% of its train positives hidden (seeded, written
to ``data/derived/``); the hidden pairs are read back only to measure false negatives. Negatives are mined
from the zero-shot index of the base corpus with the visible labels only, so hidden positives can come back
as "negatives", exactly as unjudged relevant documents do in a pooled collection.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import typer
from sklearn.metrics import roc_auc_score

from bench.common import MODELS, ensure_index, paired_columns, rows_label, sample_test_queries, save_run
from bench.hard_negatives import star_folder, star_run
from bench.results import ROOT, record
from retriever.data import load_dataset
from retriever.data.derive import false_negative_rate, hide_positives, read_hidden_positives
from retriever.encoders import BiEncoder, load_sentence_transformer
from retriever.evaluate.plots import new_figure, save_png
from retriever.pipeline import build_index, evaluate_index, rerank_evaluation, retrieve
from training.config import TrainConfig
from training.losses.cet import cet_weights
from training.negatives import MiningParams, mine_hard_negatives, read_negatives
from training.rerank_config import RerankerConfig
from training.rerank_eval import score_batches
from training.rerank_models import CrossEncoderScorer
from training.rerank_trainer import train_reranker
from training.trainer import train

logger = logging.getLogger("bench.cet")
HARD_POOL = 30


def prepare(dataset: str, seed: int):
    """The (possibly derived) dataset, its base name, and the hidden positives."""
    match = re.fullmatch(r"(.+)-hidden(\d+)", dataset)
    if not match:
        return load_dataset(dataset), dataset, {}
    base, percent = match.group(1), int(match.group(2))
    folder = ROOT / "data" / "derived" / dataset
    if not (folder / "qrels" / "train.tsv").is_file():
        hide_positives(load_dataset(base), folder, percent / 100, seed)
    return load_dataset(str(folder)), base, read_hidden_positives(folder)


def selection_weights(kind: str, path, data, pairs: list[tuple[str, str]], tau: float, ratio: float,
                      max_length: int = 256) -> np.ndarray:
    """CET's w_R = 1 / (1 - sigma(S(q, d) / T)) from the trained selection model, for (query, negative) pairs."""
    queries = [data.queries[q] for q, _ in pairs]
    docs = data.doc_texts([d for _, d in pairs])
    if kind == "bi":
        model = load_sentence_transformer(str(path))
        q = model.encode(queries, batch_size=128, convert_to_tensor=True, normalize_embeddings=True)
        d = model.encode(docs, batch_size=128, convert_to_tensor=True, normalize_embeddings=True)
        logits = (q * d).sum(-1) / tau
    else:
        scorer = CrossEncoderScorer(str(path), max_length).to("cuda" if torch.cuda.is_available() else "cpu").eval()
        logits = torch.from_numpy(score_batches(scorer, queries, docs, 128))
    return cet_weights(logits.float().cpu(), ratio).numpy()


def plot_weights(curves: dict[str, tuple[np.ndarray, np.ndarray]], png, title: str) -> None:
    fig, axes = new_figure((5.5 * len(curves), 3.8), ncols=len(curves), squeeze=False)
    for ax, (name, (weights, hidden)) in zip(axes[0], curves.items(), strict=True):
        bins = np.linspace(weights.min(), weights.max(), 40)
        ax.hist(weights[~hidden], bins=bins, density=True, alpha=0.6, label=f"other negatives ({(~hidden).sum()})")
        if hidden.any():
            ax.hist(weights[hidden], bins=bins, density=True, alpha=0.6, label=f"hidden positives ({hidden.sum()})")
        ax.set(title=name, xlabel="CET weight w_R of the mined negative", ylabel="density")
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    save_png(fig, png, dpi=110)


@dataclass
class CetContext:
    """What both parts share: the data, its mined negatives' false-negative rates, the (query, negative)
    pairs whose CET weights the PNG shows, and the recipe common to both."""

    data: object
    dataset: str
    base: str
    negatives_path: Path
    fnr: dict
    pairs: list[tuple[str, str]]
    is_hidden: np.ndarray
    n_weight_queries: int
    learning_rate: float
    debias_ratio: float
    seed: int
    max_steps: int
    epochs: float = 1.0
    rows: str = "pair"


def prepare_context(dataset: str, seed: int, weight_queries: int, learning_rate: float, debias_ratio: float,
                    max_steps: int, epochs: float = 1.0, rows: str = "pair"):
    """The context, and the base corpus's zero-shot ``(index, encoder)`` (negatives mined from it once)."""
    data, base, hidden = prepare(dataset, seed)
    index, manifest, encoder, _ = ensure_index(load_dataset(base), f"{base}-zero-shot", "default")
    negatives_path = MODELS / f"{dataset}-negatives.json"
    if not negatives_path.is_file():
        mine_hard_negatives(data, "train", index, manifest, encoder, MiningParams(top_k=200, seed=seed)
                            ).save(negatives_path)
    negatives = read_negatives(negatives_path).negatives
    fnr = {}
    if hidden:
        fnr = {"false_negative_rate": false_negative_rate(negatives, hidden),
               "false_negative_rate_top30": false_negative_rate({q: v[:HARD_POOL] for q, v in negatives.items()},
                                                                hidden)}
        logger.info("false negatives among mined negatives: %s", fnr)
    rng = np.random.default_rng(seed)
    weight_qids = sorted(rng.choice(sorted(negatives), min(weight_queries, len(negatives)), replace=False).tolist())
    pairs = [(q, d) for q in weight_qids for d in negatives[q][:HARD_POOL]]
    is_hidden = np.array([d in hidden.get(q, ()) for q, d in pairs])
    context = CetContext(data, dataset, base, negatives_path, fnr, pairs, is_hidden, len(weight_qids),
                         learning_rate, debias_ratio, seed, max_steps, epochs, rows)
    return context, index, encoder


def bi_encoder_rows(c: CetContext, batch_size: int, max_pairs: int | None, curves: dict, methods: list[str],
                    baselines: dict) -> None:
    """STAR with and without CET: trained once each, indexed, evaluated on test and paired with
    ``baselines`` ({label: run}; hn-cet is paired with hn-plain too, once that ran); the CET weights' curve."""
    common = dict(data=str(c.data.path), loss="star", negatives_file=c.negatives_path, n_negatives=1,
                  batch_size=batch_size, learning_rate=c.learning_rate, seed=c.seed, max_pairs=max_pairs,
                  dev_corpus_size=500, early_stopping_patience=None, debias_ratio=c.debias_ratio,
                  max_steps=c.max_steps, epochs=c.epochs, rows=c.rows)
    budget = ("" if c.epochs == 1 else f"-{c.epochs:g}ep") + ("" if c.rows == "pair" else "-per-query")
    for method, debias in (("hn-plain", "none"), ("hn-cet", "cet")):
        if method not in methods:
            continue
        name = f"{c.dataset}-{method}" + ("" if debias == "none" else f"-T{c.debias_ratio:g}") + budget
        output = MODELS / name
        if not (output / "train_summary.json").is_file():
            train(TrainConfig(debias=debias, output=output, resume=(output / "checkpoints").is_dir(), **common))
        summary = json.loads((output / "train_summary.json").read_text())
        start = time.perf_counter()
        model = BiEncoder.load(str(output), show_progress=True)
        trained_index, _, _ = build_index(c.data, model, name, root=ROOT / "indexes")
        report = evaluate_index(trained_index, model, c.data, split="test", k=1000)
        metrics = report.metrics | c.fnr | {"train_seconds": summary["train_seconds"], "max_pairs": max_pairs or 0,
                                             "samples_per_s": summary["samples_per_s"], "steps": summary["steps"],
                                             "epochs": c.epochs, "best_dev_ndcg@10": summary.get("best_dev_ndcg@10")}
        metrics |= paired_columns(c.data.qrels("test"), report.run, baselines)
        save_run(report.run, f"{name}-test")
        if debias == "none":
            baselines = baselines | {"plain": report.run}
        if debias == "cet":
            weights = selection_weights("bi", output / "selection", c.data, c.pairs, 0.05, c.debias_ratio)
            curves["bi-encoder (STAR + CET)"] = (weights, c.is_hidden)
            metrics |= _weight_metrics(weights, c.is_hidden)
        label = "all-MiniLM-L6-v2+star" + (f"+cet(T={c.debias_ratio:g})" if debias == "cet" else "")
        label += f" ({max_pairs} pairs)" if max_pairs else ""
        label += f" ({c.epochs:g} epochs)" if c.epochs != 1 else ""
        label += rows_label(c.rows)
        record(c.dataset, "test", method, label, metrics, summary["train_seconds"] + time.perf_counter() - start)


@dataclass
class RerankRecipe:
    max_groups: int | None
    batch_size: int
    epochs: float
    depth: int
    max_queries: int | None
    max_length: int
    tag: str


def reranker_rows(c: CetContext, index, encoder, r: RerankRecipe, curves: dict) -> None:
    """The pairwise cross-encoder with and without CET, reranking the zero-shot top ``depth`` of test."""
    qids = sample_test_queries(c.data, r.max_queries, c.seed)
    run = retrieve(index, encoder, {q: c.data.queries[q] for q in qids}, k=r.depth)
    for method, debias in (("rerank-ce-plain", "none"), ("rerank-ce-cet", "cet")):
        output = MODELS / (f"{c.dataset}-{method}" + ("" if debias == "none" else f"-T{c.debias_ratio:g}")
                           + (f"-{r.tag}" if r.tag else ""))
        if not (output / "train_summary.json").is_file():
            train_reranker(RerankerConfig(
                objective="pair", debias=debias, debias_ratio=c.debias_ratio, data=str(c.data.path),
                negatives_file=c.negatives_path, n_hard=7, n_easy=0, hard_pool=HARD_POOL, max_groups=r.max_groups,
                batch_size=r.batch_size, learning_rate=c.learning_rate, max_length=r.max_length,
                epochs=r.epochs, seed=c.seed, output=output,
                resume=(output / "checkpoints").is_dir(), early_stopping_patience=None, max_steps=c.max_steps))
        summary = json.loads((output / "train_summary.json").read_text())
        report = rerank_evaluation(c.data, "test", run, str(output), r.depth)
        metrics = report.metrics | c.fnr | {"ms_per_query": report.ms_per_query, "depth": r.depth,
                                            "n_queries": len(run), "train_seconds": summary["train_seconds"],
                                            "max_groups": r.max_groups or 0, "steps": summary["steps"]}
        if debias == "cet":
            weights = selection_weights("ce", output / "selection", c.data, c.pairs, 1.0, c.debias_ratio,
                                        r.max_length)
            curves["cross-encoder (pairwise + CET)"] = (weights, c.is_hidden)
            metrics |= _weight_metrics(weights, c.is_hidden)
        label = f"{c.base}-zero-shot>>ce-pair" + (f"+cet(T={c.debias_ratio:g})" if debias == "cet" else "")
        label += f" [{r.tag}]" if r.tag else ""
        label += f" ({r.max_groups} groups)" if r.max_groups else ""
        record(c.dataset, "test", method, label, metrics, report.seconds + summary["train_seconds"])


def main(
    dataset: str = typer.Option("nfcorpus-hidden50"),
    max_pairs: int | None = typer.Option(None, help="Bi-encoder: subsample training pairs (seeded)."),
    max_groups: int | None = typer.Option(None, help="Reranker: subsample groups (seeded)."),
    parts: list[str] = typer.Option(["bi", "rerank"], "--part"),
    methods: list[str] = typer.Option(["hn-plain", "hn-cet"], "--method", help="Bi-encoder rows: hn-plain, hn-cet."),
    epochs: float = typer.Option(1.0, help="Bi-encoder: STAR epochs (the best dev nDCG@10 is kept)."),
    rows: str = typer.Option("pair", help="Bi-encoder rows: pair (every labelled pair) | query (one per train query "
                             "per epoch, a sampled positive)."),
    batch_size: int = typer.Option(32),
    rerank_batch_size: int = typer.Option(8),
    rerank_epochs: float = typer.Option(1.0, help="Reranker: passes over the training groups."),
    learning_rate: float = typer.Option(2e-5),
    debias_ratio: float = typer.Option(10.0, help="CET's T (10, the official ranker.sh)."),
    rerank_depth: int = typer.Option(100),
    max_queries: int | None = typer.Option(None, help="Reranker: rerank only this many test queries (seeded)."),
    rerank_max_length: int = typer.Option(256, help="Reranker: tokens per (query, document) pair."),
    tag: str = typer.Option("", help="Suffix of the reranker folders and labels (recipe variants)."),
    weight_queries: int = typer.Option(300, help="Train queries whose top-30 negatives are scored for the PNG."),
    seed: int = typer.Option(42),
    max_steps: int = typer.Option(-1, help="Cap on training steps (quick checks)."),
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    context, index, encoder = prepare_context(dataset, seed, weight_queries, learning_rate, debias_ratio, max_steps,
                                              epochs, rows)
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if "bi" in parts:
        # zero-shot's and STAR's saved run (bench.hard_negatives: the same negatives file, no CET)
        zero_run = evaluate_index(index, encoder, context.data, split="test", k=1000, with_auc=False).run
        bi_encoder_rows(context, batch_size, max_pairs, curves, methods,
                        {"zero_shot": zero_run} | star_run(star_folder(dataset, "star", "dense")))
    if "rerank" in parts:
        recipe = RerankRecipe(max_groups, rerank_batch_size, rerank_epochs, rerank_depth, max_queries,
                              rerank_max_length, tag)
        reranker_rows(context, index, encoder, recipe, curves)
    if curves:
        suffix = "" if set(parts) == {"bi", "rerank"} else "_" + "-".join(parts)
        suffix += f"_{tag}" if tag and "rerank" in parts else ""
        suffix += f"_{epochs:g}ep" if epochs != 1 and "bi" in parts else ""
        suffix += "_per-query" if rows == "query" and "bi" in parts else ""
        plot_weights(curves, ROOT / "docs" / f"cet_weights_{dataset}_T{debias_ratio:g}{suffix}.png",
                     f"{dataset}: CET weights, top-{HARD_POOL} mined negatives of {context.n_weight_queries} train "
                     "queries")


def _weight_metrics(weights: np.ndarray, hidden: np.ndarray) -> dict:
    if not hidden.any() or hidden.all():
        return {"cet_weight_mean": float(weights.mean())}
    return {"cet_weight_hidden_positives": float(weights[hidden].mean()),
            "cet_weight_other_negatives": float(weights[~hidden].mean()),
            "cet_weight_auc_hidden": float(roc_auc_score(hidden, weights))}


if __name__ == "__main__":
    typer.run(main)
