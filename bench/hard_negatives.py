"""Issue 4: STAR, ADORE, ADORE + STAR and MW + STAR against zero-shot and in-batch contrastive.

    python -m bench.hard_negatives --dataset scifact
    python -m bench.hard_negatives --dataset nfcorpus --max-pairs 1600

Negatives are mined once from the zero-shot index (top 200, labelled positives removed); each STAR row
samples one of them (seeded). ADORE trains the query tower only, against an index copy, so the zero-shot
index stays as it is. Trained models go to ``models/<dataset>-<method>/``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time

import typer

from bench.common import INDEXES, MODELS, ensure_index
from bench.results import record
from retriever.data import load_dataset
from retriever.pipeline import evaluate_index, open_index
from training.adore import train_adore
from training.config import ADORE_LEARNING_RATE, TrainConfig
from training.negatives import MiningParams, mine_hard_negatives, read_negatives
from training.trainer import train

logger = logging.getLogger("bench.hard_negatives")




def evaluate_and_record(data, dataset: str, method: str, index, encoder, summary: dict, extra: dict,
                        max_pairs: int | None = None, variant: str = "", baseline=None) -> None:
    """Test metrics of one trained model; with ``baseline`` (zero-shot's test run), a paired t-test on
    nDCG@10 against it (``p_vs_zero_shot``) and the run saved to bench/runs/."""
    from bench.common import paired_test, save_run

    report = evaluate_index(index, encoder, data, split="test", k=1000)
    metrics = report.metrics | {"train_seconds": summary["train_seconds"], "samples_per_s": summary["samples_per_s"],
                                "steps": summary["steps"]} | extra
    if baseline is not None:
        test = paired_test(data.qrels("test"), report.run, baseline)
        metrics |= {"p_vs_zero_shot": f"{test['p']:.2g}", "delta_vs_zero_shot": test["delta"]}
        save_run(report.run, f"{dataset}-test-{method}{variant.replace(' ', '')}")
    label = f"all-MiniLM-L6-v2+{method}{variant}" + (f" ({max_pairs} pairs)" if max_pairs else "")
    record(dataset, "test", method, label, metrics, summary["train_seconds"])


def main(
    dataset: str = typer.Option("scifact"),
    max_pairs: int | None = typer.Option(None),
    batch_size: int = typer.Option(32),
    learning_rate: float = typer.Option(2e-5),
    seed: int = typer.Option(42),
    only: list[str] = typer.Option([], help="Run only these methods (star, mw-star, adore, adore-star)."),
    max_steps: int = typer.Option(-1, help="Cap on training steps (quick checks)."),
    adore_normalize: str = typer.Option("pairs", help="ADORE: pairs (the official loss) | sum | weights."),
    adore_lr: float = typer.Option(ADORE_LEARNING_RATE, help="ADORE's learning rate (official default 5e-6)."),
    max_epochs: int = typer.Option(10, help="ADORE: epochs at most (early stopping on dev nDCG@10)."),
    min_epochs: int = typer.Option(3),
    patience: int = typer.Option(2, help="ADORE: epochs without a better dev nDCG@10 before stopping."),
    time_budget_min: float | None = typer.Option(None, help="ADORE: stop at the first dev evaluation past this "
                                                 "many training minutes (the best epoch is kept)"),
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    data = load_dataset(dataset)
    zero_index, zero_manifest, zero_encoder, _ = ensure_index(data, f"{dataset}-zero-shot", "default")

    negatives_path = MODELS / f"{dataset}-negatives.json"
    start = time.perf_counter()
    star_methods = [m for m in ("star", "mw-star", "adore-star") if not only or m in only]
    if star_methods and not negatives_path.is_file():  # ADORE alone mines its own negatives at every step
        mine_hard_negatives(data, "train", zero_index, zero_manifest, zero_encoder,
                            MiningParams(top_k=200, seed=seed)).save(negatives_path)
    mining_seconds = time.perf_counter() - start
    if star_methods:
        logger.info("negatives: %s (%d queries)", negatives_path, len(read_negatives(negatives_path).negatives))

    common = dict(data=dataset, batch_size=batch_size, learning_rate=learning_rate, seed=seed, epochs=1.0,
                  max_steps=max_steps,
                  max_pairs=max_pairs, dev_corpus_size=500, early_stopping_patience=None)
    for method, loss in (("star", "star"), ("mw-star", "mw")):
        if only and method not in only:
            continue
        output = MODELS / f"{dataset}-{method}"
        if not (output / "train_summary.json").is_file():
            train(TrainConfig(loss=loss, negatives_file=negatives_path, n_negatives=1, output=output,
                              resume=(output / "checkpoints").is_dir(), **common))
        summary = json.loads((output / "train_summary.json").read_text())
        index, _, encoder, encode_seconds = ensure_index(data, f"{dataset}-{method}", str(output))
        evaluate_and_record(data, dataset, method, index, encoder, summary, {
            "mining_seconds": mining_seconds, "mining_seconds_per_step": mining_seconds / summary["steps"],
            "corpus_encode_seconds": encode_seconds}, max_pairs)

    changed = ([(f"-norm-{adore_normalize}", f"norm={adore_normalize}")] if adore_normalize != "pairs" else []) + (
        [(f"-lr{adore_lr:g}", f"lr={adore_lr:g}")] if adore_lr != ADORE_LEARNING_RATE else [])
    variant = "".join(folder for folder, _ in changed)  # model/index folder suffix
    settings = ", ".join(label for _, label in changed)
    adore_methods = [m for m in ("adore", "adore-star") if not only or m in only]
    zero_run = evaluate_index(zero_index, zero_encoder, data, split="test", k=1000, with_auc=False).run \
        if adore_methods else None
    adore_common = common | dict(learning_rate=adore_lr, epochs=float(max_epochs), min_epochs=min_epochs,
                                 early_stopping_patience=patience)
    for method, base in (("adore", f"{dataset}-zero-shot"), ("adore-star", f"{dataset}-star")):
        if method not in adore_methods:
            continue
        target = INDEXES / f"{dataset}-{method}{variant}"
        output = MODELS / f"{dataset}-{method}{variant}"
        if not (output / "train_summary.json").is_file():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(INDEXES / base, target)
            train_adore(TrainConfig(method="adore", index=str(target), output=output,
                                    adore_normalize=adore_normalize, **adore_common),
                        time_budget_s=time_budget_min * 60 if time_budget_min else None)
        summary = json.loads((output / "train_summary.json").read_text())
        index, _, encoder = open_index(target)
        evaluate_and_record(data, dataset, method, index, encoder, summary, {
            "corpus_encode_seconds": 0.0, "epochs_run": summary.get("epochs_run"),
            "best_step": summary.get("best_step"), "best_dev_ndcg@10": summary.get("best_dev_ndcg@10"),
            "stopped_early": summary.get("stopped_early"),
            "learning_rate": f"{summary['learning_rate']:g}",  # a string: records round floats to 5 decimals
        }, max_pairs, variant=f" ({settings})" if settings else "", baseline=zero_run)


if __name__ == "__main__":
    typer.run(main)
