"""Issue 6: SoftREPA-style soft tokens on a frozen all-MiniLM-L6-v2, against zero-shot and full fine-tuning.

    python -m bench.soft_tokens --dataset scifact
    python -m bench.soft_tokens --dataset scifact --side both --k 16 --layers 1 --epochs 1

Query-side runs reuse the zero-shot index as it is (documents keep the frozen model's vectors), so their
evaluation encodes only the queries; ``eval_seconds`` and ``corpus_encode_seconds`` show what that saves.
"""

from __future__ import annotations

import json
import logging
import time

import typer

from bench.results import ROOT, record
from retriever.data import load_dataset
from retriever.encoders import BiEncoder
from retriever.pipeline import build_index, evaluate_index, open_index
from training.config import TrainConfig
from training.soft_tokens import train_soft_tokens

logger = logging.getLogger("bench.soft_tokens")


def main(
    dataset: str = typer.Option("scifact"),
    side: str = typer.Option("query"),
    k: list[int] = typer.Option([1, 4, 16, 64], "--k"),
    layers: list[int] = typer.Option([1], "--layers"),
    epochs: float = typer.Option(3.0),
    learning_rate: float = typer.Option(3e-3),
    batch_size: int = typer.Option(32),
    seed: int = typer.Option(42),
    loss: str = typer.Option("contrastive"),
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    data = load_dataset(dataset)
    zero_index, _, zero_encoder = open_index(ROOT / "indexes" / f"{dataset}-zero-shot")
    for n_layers in layers:
        for n_tokens in k:
            method = f"soft-tokens-{side}-k{n_tokens}-l{n_layers}" + ("-mw" if loss == "mw" else "")
            output = ROOT / "models" / f"{dataset}-{method}"
            if not (output / "train_summary.json").is_file():
                train_soft_tokens(TrainConfig(method="soft-tokens", data=dataset, side=side, soft_tokens=n_tokens,
                                              soft_layers=n_layers, epochs=epochs, learning_rate=learning_rate,
                                              batch_size=batch_size, seed=seed, loss=loss, output=output))
            summary = json.loads((output / "train_summary.json").read_text())
            start = time.perf_counter()
            encoder = BiEncoder.load(str(output), show_progress=True)
            encode_seconds = 0.0
            if side == "query":
                index = zero_index  # same document vectors: nothing to re-encode
            else:
                index, _, _ = build_index(data, encoder, f"{dataset}-{method}", root=ROOT / "indexes")
                encode_seconds = time.perf_counter() - start
            report = evaluate_index(index, encoder, data, split="test", k=1000)
            metrics = report.metrics | {
                "trainable_params": summary["trainable_params"], "train_seconds": summary["train_seconds"],
                "samples_per_s": summary["samples_per_s"], "peak_rss_mb": summary["peak_rss_mb"],
                "final_temperature": summary["tau"], "eval_seconds": time.perf_counter() - start,
                "corpus_encode_seconds": encode_seconds, "epochs": epochs, "learning_rate": learning_rate,
            }
            record(dataset, "test", method, "all-MiniLM-L6-v2 (frozen)", metrics, summary["train_seconds"])
    del zero_encoder


if __name__ == "__main__":
    typer.run(main)
