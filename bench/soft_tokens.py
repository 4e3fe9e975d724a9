"""Issue 6 / 20: SoftREPA-style soft tokens on a frozen all-MiniLM-L6-v2, against zero-shot.

    python -m bench.soft_tokens --dataset scifact --k 1 --k 4 --k 16 --k 64
    python -m bench.soft_tokens --dataset nfcorpus --rows query --k 16
    python -m bench.soft_tokens --dataset scifact --k 16 --n-negatives 7
    python -m bench.soft_tokens --dataset scifact --side both --k 16 --layers 1
    python -m bench.soft_tokens --dataset scifact --objective adore --rows query --k 16 --layers 6 --learning-rate 1e-2

Each run trains up to ``--max-epochs`` epochs with a dev nDCG@10 evaluation after each, keeps the best
epoch, and stops after ``--patience`` epochs without improvement (never before ``--min-epochs``).
Query-side runs reuse the zero-shot index as it is (documents keep the frozen model's vectors), so
neither training nor evaluation re-encodes the corpus. Every row carries a paired t-test of its per-query
nDCG@10 against zero-shot (``p_vs_zero_shot``), and docs/significance/ gets the ranx report.
"""

from __future__ import annotations

import json
import logging
import time

import typer

from bench.common import MODELS, ensure_index, paired_test, save_run
from bench.results import ROOT, record, write_significance
from retriever.data import load_dataset
from retriever.encoders import BiEncoder
from retriever.pipeline import build_index, evaluate_index
from training.config import TrainConfig
from training.negatives import MiningParams, mine_hard_negatives
from training.soft_tokens import train_soft_tokens

logger = logging.getLogger("bench.soft_tokens")


def _train(dataset: str, method: str, config: dict, objective: str, budget_s: float | None) -> dict:
    output = ROOT / "models" / f"{dataset}-{method}"
    summary_path = output / "train_summary.json"
    if not summary_path.is_file() or "epochs_run" not in json.loads(summary_path.read_text()):
        train_soft_tokens(TrainConfig(method="soft-tokens", data=dataset, output=output, **config), objective, budget_s)
    return json.loads(summary_path.read_text()) | {"output": str(output)}


def _evaluate_and_record(data, dataset: str, method: str, summary: dict, zero_index, zero, side: str,
                         settings: dict) -> dict:
    """Test metrics of one trained run with its paired t-test against zero-shot; returns its test run. A
    query-side run searches the zero-shot index as it is (same document vectors, nothing re-encoded)."""
    start = time.perf_counter()
    encoder = BiEncoder.load(summary["output"], show_progress=True)
    encode_seconds = 0.0
    index = zero_index
    if side != "query":
        index, _, _ = build_index(data, encoder, f"{dataset}-{method}", root=ROOT / "indexes")
        encode_seconds = time.perf_counter() - start
    report = evaluate_index(index, encoder, data, split="test", k=1000)
    test = paired_test(data.qrels("test"), report.run, zero.run)
    save_run(report.run, f"{dataset}-test-{method}")
    metrics = report.metrics | {
        "p_vs_zero_shot": f"{test['p']:.2g}", "delta_vs_zero_shot": test["delta"],
        "trainable_params": summary["trainable_params"], "train_seconds": summary["train_seconds"],
        "epochs_run": summary["epochs_run"], "best_epoch": summary["best_epoch"],
        "best_dev_ndcg@10": summary["best_dev_ndcg@10"], "learning_rate": settings["learning_rate"],
        "temperature": summary["tau"], "rows": settings["rows"], "objective": settings["objective"],
        "eval_seconds": time.perf_counter() - start,
        "corpus_encode_seconds": encode_seconds,
    }
    logger.info("%s: nDCG@10 %.4f (zero-shot %.4f, p = %.3g)", method, report.metrics["ndcg@10"],
                zero.metrics["ndcg@10"], test["p"])
    record(dataset, "test", method, "all-MiniLM-L6-v2 (frozen)", metrics, summary["train_seconds"])
    return report.run


def main(
    dataset: str = typer.Option("scifact"),
    side: str = typer.Option("query"),
    k: list[int] = typer.Option([1, 4, 16, 64], "--k"),
    layers: list[int] = typer.Option([1], "--layers"),
    max_epochs: int = typer.Option(10),
    min_epochs: int = typer.Option(3),
    patience: int = typer.Option(2),
    learning_rate: float = typer.Option(1e-2),
    batch_size: int = typer.Option(32),
    rows: str = typer.Option("pair", help="pair | query (one row per training query per epoch, NFCorpus)"),
    seed: int = typer.Option(42),
    loss: str = typer.Option("contrastive"),
    tag: str = typer.Option("", help="Suffix of the method name (learning-rate sweeps on dev)."),
    n_negatives: int = typer.Option(0, help="Mined hard negatives per row (zero-shot top 200, sampled; free on "
                                    "the query side: their vectors are cached)."),
    objective: str = typer.Option("infonce", help="infonce | adore (dynamic negatives from the frozen corpus, "
                                  "ADORE's ΔMRR loss; query side)"),
    time_budget_min: float | None = typer.Option(None, help="Per run: stop after the first epoch past this many "
                                                 "training minutes (the best epoch is kept)"),
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    data = load_dataset(dataset)
    zero_index, zero_manifest, zero_encoder, _ = ensure_index(data, f"{dataset}-zero-shot", "default")
    qrels = data.qrels("test")
    zero = evaluate_index(zero_index, zero_encoder, data, split="test", k=1000, with_auc=False)
    runs = {"zero-shot": zero.run}
    negatives_file = None
    if n_negatives:
        negatives_file = MODELS / f"{dataset}-negatives.json"
        if not negatives_file.is_file():
            mine_hard_negatives(data, "train", zero_index, zero_manifest, zero_encoder,
                                MiningParams(top_k=200, seed=seed)).save(negatives_file)
    for n_layers in layers:
        for n_tokens in k:
            method = (f"soft-tokens-{side}-k{n_tokens}-l{n_layers}" + ("-mw" if loss == "mw" else "")
                      + (f"-hn{n_negatives}" if n_negatives else "") + ("-adore" if objective == "adore" else "") + tag)
            summary = _train(dataset, method, dict(
                side=side, soft_tokens=n_tokens, soft_layers=n_layers, epochs=max_epochs, min_epochs=min_epochs,
                early_stopping_patience=patience, learning_rate=learning_rate, batch_size=batch_size, seed=seed,
                loss=loss, rows=rows, negatives_file=negatives_file, n_negatives=n_negatives), objective,
                 time_budget_min * 60 if time_budget_min else None)
            runs[method] = _evaluate_and_record(data, dataset, method, summary, zero_index, zero, side, {
                "learning_rate": f"{learning_rate:g}", "rows": rows, "objective": objective})
    ks = "-".join(str(n) for n in k)  # one report per K set: a later run never overwrites another's
    label = f"soft-tokens-{side}" + ("-adore" if objective == "adore" else "") + f"-k{ks}" + tag
    write_significance(dataset, "test", label, qrels, runs)


if __name__ == "__main__":
    typer.run(main)
