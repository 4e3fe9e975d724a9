"""``retriever train``: registered into the ``retriever`` CLI through the ``retriever.commands`` entry point."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from retriever.cli.backend_option import BackendOpt, use_backend


def _config(model, config_file: Path | None, params: dict):
    """The flags that were given (``None`` = not given) over the YAML file, validated as ``model``."""
    from training.config import load_config

    overrides = {k: v for k, v in params.items() if k not in ("config", "as_json", "resume")}
    overrides["resume"] = params["resume"] or None
    return load_config(config_file, overrides, model)


def _with_outputs(summary: dict, output: Path) -> dict:
    """Add where the run's log and training curve are, when they exist."""
    files = {"log": output / "log.jsonl", "training_curve": output / "training_curve.png"}
    return summary | {k: str(v.resolve()) for k, v in files.items() if v.is_file()}


def _echo(summary: dict, as_json: bool) -> None:
    typer.echo(json.dumps(summary, indent=2) if as_json else "\n".join(f"{k}: {v}" for k, v in summary.items()))


def train_command(
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML file; flags override it."),
    method: str | None = typer.Option(None, help="finetune (default) | adore (needs --index) | soft-tokens"),
    index: str | None = typer.Option(None, help="ADORE: index built with the frozen document encoder."),
    adore_top_k: int | None = typer.Option(None, help="ADORE: dynamic negatives per query (default 200)."),
    adore_normalize: str | None = typer.Option(None, help="ADORE: pairs (official, default) | sum | weights."),
    soft_tokens: int | None = typer.Option(None, help="soft-tokens: K (default 16)."),
    soft_layers: int | None = typer.Option(None, help="soft-tokens: deep prompts in the first n layers (1)."),
    side: str | None = typer.Option(None, help="soft-tokens: query (default) | doc | both"),
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
    negative_sampling: str | None = typer.Option(None, help="random (STAR, default) | top"),
    max_pairs: int | None = typer.Option(None, help="Subsample training pairs (seeded)."),
    dev_corpus_size: int | None = typer.Option(None),
    eval_steps: int | None = typer.Option(None),
    save_steps: int | None = typer.Option(None),
    early_stopping_patience: int | None = typer.Option(None),
    min_epochs: int | None = typer.Option(None, help="Early stopping never stops before this many epochs (0)."),
    rows: str | None = typer.Option(None, help="pair (one row per labelled pair) | query (one per query per epoch)"),
    mw_normalize: str | None = typer.Option(None, help="MW: pairs (mean, default) | batch (the paper's 1/B)"),
    debias: str | None = typer.Option(None, help="none | cet (CET weights on STAR's pairs; needs --loss star)"),
    debias_ratio: float | None = typer.Option(None, help="CET's T (default 10, the official script)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in --output."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Fine-tune an embedding model on a BEIR dataset's qrels."""
    params = dict(locals())
    from training.config import TrainConfig
    from training.trainer import train

    settings = _config(TrainConfig, config, params)
    if settings.method in ("adore", "soft-tokens"):
        from training.adore import train_adore
        from training.soft_tokens import train_soft_tokens

        summary = (train_adore if settings.method == "adore" else train_soft_tokens)(settings)
        _echo(_with_outputs(summary, settings.output), as_json)
        return
    result = train(settings)
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun, rank 0 reports
    summary = {"output": str(result.output), "train_seconds": round(result.train_seconds, 1),
               "samples_per_s": round(result.samples_per_s, 2), "steps": result.steps, "best_dev": result.best_dev}
    _echo(_with_outputs(summary, settings.output), as_json)


def mine_command(
    index: str = typer.Option(..., "--index", "-i", help="Index built with the warm-up (mining) model."),
    data: str = typer.Option(..., "--data", "-d"),
    split: str = typer.Option("train"),
    output: Path = typer.Option(..., "--output", "-o", help="Negatives file (JSON) to write."),
    top_k: int = typer.Option(200, min=1, help="Negatives per query, from the top of the ranking."),
    skip_top: int = typer.Option(0, min=0, help="Skip this many top non-positives (likely false negatives)."),
    max_score: float | None = typer.Option(None, help="Drop negatives scoring above this cosine."),
    relative_margin: float | None = typer.Option(None, help="Drop negatives above margin x lowest positive score."),
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
    from retriever.data import load_dataset
    from retriever.index.manifest import check_data_source
    from retriever.index.store import index_manifest
    from retriever.pipeline import open_index
    from retriever.search import rank_queries
    from training.negatives import MiningParams, mine_hard_negatives

    if mode != "dense" and (max_score is not None or relative_margin is not None):
        raise typer.BadParameter("--max-score and --relative-margin are cosine margins: use them with --mode dense")
    dataset = load_dataset(data)
    check_data_source(index_manifest(index), dataset, force)
    faiss_index, manifest, encoder = open_index(index, show_progress=True)
    params = MiningParams(top_k, skip_top, max_score, relative_margin, sampling, n_keep, seed)
    ranking = None if mode == "dense" else rank_queries(index, faiss_index, manifest, encoder, [
        dataset.queries[q] for q in dataset.qrels(split)], top_k + skip_top + 50, mode, fusion)
    mined = mine_hard_negatives(dataset, split, faiss_index, manifest, encoder, params, ranking=ranking)
    mined.params["mode"] = mode
    mined.save(output)
    counts = [len(v) for v in mined.negatives.values()]
    typer.echo(f"{output}: {sum(counts)} negatives for {len(counts)} queries "
               f"(min {min(counts, default=0)}, max {max(counts, default=0)}), model {mined.model_id}")


def train_reranker_command(
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML file; flags override it."),
    arch: str | None = typer.Option(None, help="cross-encoder (default) | causal-lm"),
    objective: str | None = typer.Option(None, help="sft (pointwise, default) | cl (listwise) | pair (CET's)"),
    model: str | None = typer.Option(None, help="Start checkpoint (default: MiniLM, or smollm2 for causal-lm)."),
    data: str | None = typer.Option(None, help="Dataset name or BEIR folder."),
    split: str | None = typer.Option(None),
    negatives_file: Path | None = typer.Option(None, help="Hard negatives from 'retriever mine'."),
    n_hard: int | None = typer.Option(None, help="Mined negatives per group (3)."),
    n_easy: int | None = typer.Option(None, help="Random negatives per group (4)."),
    hard_pool: int | None = typer.Option(None, help="Sample hard negatives from this many top mined ones (30)."),
    max_groups: int | None = typer.Option(None, help="Subsample (query, positive) groups (seeded)."),
    batch_size: int | None = typer.Option(None, help="Groups per step (8)."),
    learning_rate: float | None = typer.Option(None, "--lr", "--learning-rate"),
    head_learning_rate: float | None = typer.Option(None, help="Cross-encoder: lr of the new head (1e-3)."),
    epochs: float | None = typer.Option(None),
    max_steps: int | None = typer.Option(None),
    max_length: int | None = typer.Option(None),
    temperature: float | None = typer.Option(None, help="CL temperature (1.0)."),
    sft_pos_weight: float | None = typer.Option(None, help="SFT: weight of positives (1 = paper; 7 balances 1:7)."),
    seed: int | None = typer.Option(None),
    output: Path | None = typer.Option(None, "--output", "-o"),
    save_steps: int | None = typer.Option(None),
    dev_index: str | None = typer.Option(None, help="Index whose top dev candidates are reranked for dev nDCG."),
    eval_steps: int | None = typer.Option(None),
    early_stopping_patience: int | None = typer.Option(None),
    debias: str | None = typer.Option(None, help="none | cet (needs --objective pair)"),
    debias_ratio: float | None = typer.Option(None, help="CET's T (default 10, the official script)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in --output."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Train a reranker (cross-encoder or yes/no causal LM) with SFT, listwise CL or pairwise CET."""
    params = dict(locals())
    from training.rerank_config import RerankerConfig
    from training.rerank_trainer import train_reranker

    settings = _config(RerankerConfig, config, params)
    _echo(_with_outputs(train_reranker(settings), settings.output), as_json)


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
    app.command("train-reranker")(train_reranker_command)
    app.command("mine")(mine_command)
