"""Issue 7: rerankers, SFT versus listwise contrastive, for a cross-encoder and a yes/no causal LM.

    python -m bench.rerankers --dataset scifact --arch cross-encoder \
        --first-stage scifact-zero-shot --first-stage scifact-adore-star
    python -m bench.rerankers --dataset scifact --arch causal-lm --objective none --objective sft \
        --objective cl --max-groups 64 --batch-size 2 --max-length 192 --max-queries 30 --rerank-depth 20

Negatives for training are mined once from the zero-shot index (``models/<dataset>-negatives.json``); each
group holds one positive, ``--n-hard`` of the top-30 mined negatives and ``--n-easy`` random documents.
``--objective none`` scores with the untrained start model (meaningful for the causal LM only);
``--objective random`` scores every candidate with a seeded random number (the floor a reranker that
learned nothing reaches). Trained rerankers go to ``models/<dataset>-rerank-<ce|lm>-<objective>/``. The
evaluation half (first-stage lists, pure and interpolated rows) is :mod:`bench.rerank_eval`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

from bench.common import MODELS, ensure_index
from bench.rerank_eval import UNTRAINED, EvalSettings, evaluate_first_stages, parse_first_stage
from bench.results import ROOT
from retriever.data import load_dataset
from retriever.errors import RetrieverError
from retriever.rerank.first_stage import FirstStageSpec
from training.negatives import MiningParams, mine_hard_negatives
from training.rerank_config import RerankerConfig
from training.rerank_plots import plot_gradient_weights
from training.rerank_trainer import train_reranker

logger = logging.getLogger("bench.rerankers")
SHORT = {"cross-encoder": "ce", "causal-lm": "lm"}


def ensure_negatives(data, dataset: str, seed: int = 42):
    path = MODELS / f"{dataset}-negatives.json"
    if not path.is_file():
        index, manifest, encoder, _ = ensure_index(data, f"{dataset}-zero-shot", "default")
        mine_hard_negatives(data, "train", index, manifest, encoder, MiningParams(top_k=200, seed=seed)).save(path)
    return path


def reranker_folder(dataset: str, short: str, objective: str, tag: str = ""):
    return MODELS / f"{dataset}-rerank-{short}-{objective}{'-' + tag if tag else ''}"


def checked_first_stages(texts: list[str], dataset: str) -> list[FirstStageSpec]:
    """The ``--first-stage`` specs, each refused as a bad parameter (exit status 2) when its index is missing
    or, for a hybrid list, has no lexical side: hours of training are not spent on a list that cannot run."""
    specs = []
    for text in texts:
        try:
            spec = parse_first_stage(text, dataset)
            spec.check()
        except RetrieverError as exc:
            raise typer.BadParameter(str(exc), param_hint="--first-stage") from None
        specs.append(spec)
    return specs


def _trained_on(folder: Path) -> str | None:
    config = folder / "train_config.json"
    return json.loads(config.read_text()).get("data") if config.is_file() else None


def train_objective(data, dataset: str, arch: str, objective: str, output: Path, negatives: Path | None,
                    recipe: dict) -> dict:
    """Train ``objective`` into ``output`` unless it holds a finished run (resuming its checkpoints); the
    negatives are mined from the zero-shot index when none are given and training is needed."""
    if not (output / "train_summary.json").is_file():
        negatives = negatives or ensure_negatives(data, dataset, recipe["seed"])
        train_reranker(RerankerConfig(arch=arch, objective=objective, data=dataset, negatives_file=negatives,
                                      output=output, resume=(output / "checkpoints").is_dir(),
                                      early_stopping_patience=None, **recipe))
    return json.loads((output / "train_summary.json").read_text())


def main(
    dataset: str = typer.Option("scifact"),
    arch: str = typer.Option("cross-encoder", help="cross-encoder | causal-lm"),
    objectives: list[str] = typer.Option(["sft", "cl"], "--objective",
                                         help="sft | cl | none (untrained) | random (seeded random scores)"),
    first_stages: list[str] = typer.Option([], "--first-stage", help="Index names under indexes/, or dense:INDEX, "
                                           "or hybrid:FUSION:INDEX[:DENSE_MODEL] (default: zero-shot)."),
    model_dir: Path | None = typer.Option(None, help="Folder of the (one) trained reranker: trained there if it "
                                          "holds no finished run (default: models/<dataset>-rerank-...)."),
    start_model: str | None = typer.Option(None, help="Start checkpoint of training (default: MiniLM)."),
    negatives_file: Path | None = typer.Option(None, help="Mined negatives (default: mined from zero-shot)."),
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
    max_dev_queries: int | None = typer.Option(None, help="Tune the interpolation on this many dev queries."),
    interpolate: bool = typer.Option(False, help="Also the row interpolating z-scored reranker and first-stage "
                                     "scores, its weight tuned on dev."),
    backend: str | None = typer.Option(None, help="Cross-encoder runtime: torch | onnx | onnx-int8 | auto."),
    seed: int = typer.Option(42),
    tag: str = typer.Option("", help="Suffix of the model folders and result labels (recipe variants)."),
    max_steps: int = typer.Option(-1, help="Cap on training steps (quick checks)."),
    rows: str = typer.Option("pair", help="pair: a group per labelled pair | query: a group per training query, "
                             "positive by grade (NFCorpus)"),
    sft_pos_weight: float | None = typer.Option(None, help="SFT: weight of each positive's term (default 1, the "
                                                "paper; n_hard + n_easy balances the classes)."),
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    specs = checked_first_stages(first_stages or [f"{dataset}-zero-shot"], dataset)  # before any training
    data = load_dataset(dataset)
    learned = [o for o in objectives if o not in UNTRAINED]
    if model_dir is not None and len(learned) != 1:
        raise typer.BadParameter("--model-dir holds one reranker: give exactly one trained --objective")
    recipe = dict(n_hard=n_hard, n_easy=n_easy, max_groups=max_groups, batch_size=batch_size, epochs=epochs,
                  learning_rate=learning_rate, max_length=max_length, seed=seed, rows=rows, max_steps=max_steps,
                  model=start_model, sft_pos_weight=sft_pos_weight,
                  **({"head_learning_rate": head_learning_rate} if head_learning_rate else {}))
    short = SHORT[arch]
    trained: dict[str, tuple[str, dict]] = {}
    logs = {}
    for objective in objectives:
        if objective in UNTRAINED:
            path = "random" if objective == "random" else RerankerConfig(arch=arch).start_model
            trained[objective] = (path, {"train_seconds": 0.0})
            continue
        output = model_dir or reranker_folder(dataset, short, objective, tag)
        trained[objective] = (str(output), train_objective(data, dataset, arch, objective, output, negatives_file,
                                                                   recipe))
        if (output / "log.jsonl").is_file() and _trained_on(output) == dataset:  # not a transferred model's
            logs[f"{short} {objective}"] = output / "log.jsonl"
    if logs:
        suffix = f"_{tag}" if tag else ""
        plot_gradient_weights(logs, ROOT / "docs" / f"rerank_gradient_weights_{dataset}_{short}{suffix}.png")
    extra = f" ({max_groups} groups)" if max_groups else ""
    settings = EvalSettings(rerank_depth, max_length, seed, tag, max_queries, max_dev_queries, backend, interpolate,
                            extra)
    evaluate_first_stages(data, dataset, specs, trained, short, settings)


if __name__ == "__main__":
    typer.run(main)
