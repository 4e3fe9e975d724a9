"""``retriever train``: registered into the ``retriever`` CLI through the ``retriever.commands`` entry point."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def train_command(
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML file; flags override it."),
    data: str | None = typer.Option(None, help="Dataset name or BEIR folder."),
    split: str | None = typer.Option(None, help="Training split (default train)."),
    dev_split: str | None = typer.Option(None, help="Held-out split for evaluation (default dev)."),
    model: str | None = typer.Option(None, help="Start model: 'default' or a path/name."),
    loss: str | None = typer.Option(None, help="contrastive | mw | mnrl"),
    temperature: float | None = typer.Option(None, help="tau (default 0.05, MW 0.01)."),
    batch_size: int | None = typer.Option(None),
    learning_rate: float | None = typer.Option(None, "--lr", "--learning-rate"),
    epochs: float | None = typer.Option(None),
    max_steps: int | None = typer.Option(None),
    max_seq_length: int | None = typer.Option(None),
    seed: int | None = typer.Option(None),
    output: Path | None = typer.Option(None, "--output", "-o", help="Output folder (a sentence-transformers model)."),
    negatives_file: Path | None = typer.Option(None, help="Mined hard negatives (retriever mine)."),
    n_negatives: int | None = typer.Option(None, help="Hard negatives per row."),
    max_pairs: int | None = typer.Option(None, help="Subsample training pairs (seeded)."),
    dev_corpus_size: int | None = typer.Option(None),
    eval_steps: int | None = typer.Option(None),
    save_steps: int | None = typer.Option(None),
    early_stopping_patience: int | None = typer.Option(None),
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in --output."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Fine-tune an embedding model on a BEIR dataset's qrels."""
    params = dict(locals())
    from training.config import load_config
    from training.trainer import train

    overrides = {k: v for k, v in params.items() if k not in ("config", "as_json", "resume")}
    overrides["resume"] = resume or None
    result = train(load_config(config, overrides))
    summary = {"output": str(result.output), "train_seconds": round(result.train_seconds, 1),
               "samples_per_s": round(result.samples_per_s, 2), "steps": result.steps, "best_dev": result.best_dev}
    typer.echo(json.dumps(summary, indent=2) if as_json else "\n".join(f"{k}: {v}" for k, v in summary.items()))


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
