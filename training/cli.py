"""``retriever train``: registered into the ``retriever`` CLI through the ``retriever.commands`` entry point."""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import typer

from retriever.cli.backend_option import BackendOpt, use_backend
from retriever.cli.config_options import config_command
from retriever.data import load_dataset
from retriever.index.manifest import check_data_source
from retriever.index.store import index_manifest
from retriever.pipeline import open_index
from retriever.search import rank_queries
from training.config import METHOD_CONFIGS, TrainConfig, load_config
from training.negatives import MiningParams, mine_hard_negatives
from training.rerank_config import RerankerConfig


def _with_outputs(summary: dict, output: Path) -> dict:
    """Add where the run's log and training curve are, when they exist."""
    files = {"log": output / "log.jsonl", "training_curve": output / "training_curve.png"}
    return summary | {k: str(v.resolve()) for k, v in files.items() if v.is_file()}


def _echo(summary: dict, as_json: bool) -> None:
    typer.echo(json.dumps(summary, indent=2) if as_json else "\n".join(f"{k}: {v}" for k, v in summary.items()))


COMMON_OPTIONS = [
    inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Path | None,
                      default=typer.Option(None, "--config", "-c", help="YAML file; flags override it.")),
    inspect.Parameter("resume", inspect.Parameter.KEYWORD_ONLY, annotation=bool, default=typer.Option(
        False, "--resume", help="Continue from the latest checkpoint in --output.")),
    inspect.Parameter("as_json", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                      default=typer.Option(False, "--json", help="Print the summary as JSON.")),
]
ALIASES = {"learning_rate": ("--lr", "--learning-rate"), "output": ("--output", "-o")}


def _settings(model, config: Path | None, resume: bool, overrides: dict):
    """The flags that were given (``None`` = not given) over the YAML file, validated as ``model``."""
    return load_config(config, overrides | {"resume": resume or None}, model)


def _end_process_group() -> None:
    """Under torchrun: wait for every rank, then destroy the (gloo) process group. A group left to interpreter
    exit can abort a rank ("terminate called without an active exception") while another is still saving."""
    import torch.distributed as dist  # CLI start-up: torch, only after a training

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _train(config: Path | None, resume: bool, as_json: bool, overrides: dict) -> None:
    """Fine-tune an embedding model on a BEIR dataset's qrels (--method finetune, adore or soft-tokens)."""
    settings = _settings(TrainConfig, config, resume, overrides)
    # CLI start-up: the trainers import transformers, only when a training runs, not for every CLI command
    from training.adore import train_adore  # CLI start-up
    from training.soft_tokens import train_soft_tokens  # CLI start-up
    from training.trainer import train  # CLI start-up

    if settings.method in ("adore", "soft-tokens"):
        summary = (train_adore if settings.method == "adore" else train_soft_tokens)(settings)
        _end_process_group()
        if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 reports
            _echo(_with_outputs(summary, settings.output), as_json)
        return
    result = train(settings)
    _end_process_group()
    if os.environ.get("RANK", "0") != "0":
        return
    summary = {"output": str(result.output), "train_seconds": round(result.train_seconds, 1),
               "samples_per_s": round(result.samples_per_s, 2), "steps": result.steps, "best_dev": result.best_dev}
    _echo(_with_outputs(summary, settings.output), as_json)


def _train_reranker(config: Path | None, resume: bool, as_json: bool, overrides: dict) -> None:
    """Train a reranker (cross-encoder or yes/no causal LM) with SFT, listwise CL or pairwise CET."""
    settings = _settings(RerankerConfig, config, resume, overrides)
    from training.rerank_trainer import train_reranker  # CLI start-up: transformers

    summary = train_reranker(settings)
    _end_process_group()
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 reports
        _echo(_with_outputs(summary, settings.output), as_json)


train_command = config_command(_train, list(METHOD_CONFIGS.values()), COMMON_OPTIONS, aliases=ALIASES)
train_reranker_command = config_command(_train_reranker, [RerankerConfig], COMMON_OPTIONS, aliases=ALIASES)


def mine_command(
    index: str = typer.Option(..., "--index", "-i", help="Index built with the warm-up (mining) model."),
    data: str = typer.Option(..., "--data", "-d"),
    split: str = typer.Option("train"),
    output: Path = typer.Option(..., "--output", "-o", help="Negatives file (JSON) to write."),
    top_k: int = typer.Option(200, min=1, help="Negatives per query, from the top of the ranking."),
    skip_top: int = typer.Option(0, min=0, help="Skip this many top non-positives (likely false negatives)."),
    max_score: float | None = typer.Option(None, help="Drop negatives scoring above this cosine."),
    relative_margin: float | None = typer.Option(None, help="Drop negatives above margin x lowest positive score."),
    margin_reference: str = typer.Option("lowest", help="The relative margin's positive: lowest | highest score."),
    sampling: str = typer.Option("top", help="top | random (with --n-keep)"),
    n_keep: int | None = typer.Option(None, min=1, help="Keep this many per query."),
    seed: int = typer.Option(42),
    force: bool = typer.Option(False, "--force", help="Run even if the dataset is not the index's."),
    backend: str | None = BackendOpt,
    mode: str = typer.Option("dense", help="dense | hybrid (the index's lexical side fused in) | lexical"),
    fusion: str | None = typer.Option(None, help="Hybrid fusion (default: the index's, else convex)."),
) -> None:
    """Mine static hard negatives for training (STAR) from an index; labelled positives never appear."""
    use_backend(backend)
    if mode != "dense" and (max_score is not None or relative_margin is not None):
        raise typer.BadParameter("--max-score and --relative-margin are cosine margins: use them with --mode dense")
    dataset = load_dataset(data)
    check_data_source(index_manifest(index), dataset, force)
    faiss_index, manifest, encoder = open_index(index, show_progress=True)
    params = MiningParams(top_k, skip_top, max_score, relative_margin, sampling, n_keep, seed, margin_reference)
    ranking = None if mode == "dense" else rank_queries(index, faiss_index, manifest, encoder, [
        dataset.queries[q] for q in dataset.qrels(split)], top_k + skip_top + 50, mode, fusion)
    mined = mine_hard_negatives(dataset, split, faiss_index, manifest, encoder, params, ranking=ranking)
    mined.params["mode"] = mode
    mined.save(output)
    counts = [len(v) for v in mined.negatives.values()]
    typer.echo(f"{output}: {sum(counts)} negatives for {len(counts)} queries "
               f"(min {min(counts, default=0)}, max {max(counts, default=0)}), model {mined.model_id}")


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
    app.command("train-reranker")(train_reranker_command)
    app.command("mine")(mine_command)
