"""``train(config)``: fine-tune a sentence-transformers model with sentence-transformers' trainer."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sentence_transformers.base.sampler import BatchSamplers
from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer
from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments
from transformers import set_seed

from retriever.atomic import atomic_dir, atomic_write_json
from retriever.data import BeirDataset, load_dataset
from retriever.encoders import load_sentence_transformer
from retriever.errors import RetrieverError
from training.callbacks import (
    BestModelEarlyStopping,
    DevProgressCallback,
    JsonLogCallback,
    SelectionModelCallback,
    plot_training_curve,
    report_outputs,
)
from training.config import FinetuneConfig
from training.epoch_blocks import epoch_blocks_sampler
from training.examples import TrainingRows, epoch_blocks, epoch_rows
from training.losses import KnownPositives
from training.losses.cet_star import CETStarLoss
from training.losses.registry import loss_spec
from training.negatives import read_negatives
from training.run_log import LOG_FILE

logger = logging.getLogger(__name__)

DEV_METRIC = "eval_dev_cosine_ndcg@10"


@dataclass
class TrainResult:
    output: Path
    train_seconds: float
    samples_per_s: float
    steps: int
    best_dev: float | None


def make_loss(config: FinetuneConfig, model, known: KnownPositives):
    """The loss of ``config.loss`` from the loss table (CET debiasing wraps STAR's)."""
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if config.debias == "cet":
        if config.loss != "star" or distributed:
            raise RetrieverError("--debias cet works with --loss star in a single process")
        selection = load_sentence_transformer(config.model).float()  # S: the same base checkpoint, fresh
        selection.max_seq_length = config.max_seq_length
        return CETStarLoss(model, known=known, temperature=config.tau, debias_ratio=config.debias_ratio,
                           learning_rate=config.learning_rate, selection=selection)
    spec = loss_spec(config.loss)
    options = {keyword: getattr(config, name) for name, keyword in spec.options.items()}
    return spec.load()(model, known=known, temperature=config.tau, gather_across_devices=distributed, **options)


def dev_evaluator(dataset: BeirDataset, config: FinetuneConfig):
    """IR evaluator on the dev queries over their positives plus ``dev_corpus_size`` other documents."""
    if config.dev_split not in dataset.splits:
        return None
    qrels = dataset.qrels(config.dev_split)
    positives = sorted({d for docs in qrels.values() for d in docs})
    others = [d for d in dataset.doc_ids if d not in set(positives)]
    rng = np.random.default_rng(config.seed)
    sample = [others[i] for i in rng.choice(len(others), min(config.dev_corpus_size, len(others)), replace=False)]
    doc_ids = positives + sample
    return InformationRetrievalEvaluator(
        queries={q: dataset.queries[q] for q in qrels},
        corpus=dict(zip(doc_ids, dataset.doc_texts(doc_ids), strict=True)),
        relevant_docs={q: {d for d, rel in docs.items() if rel > 0} for q, docs in qrels.items()},
        name="dev",
        batch_size=64,
        write_csv=False,
        show_progress_bar=True,
    )


def load_negatives(path: Path | None) -> dict[str, list[str]] | None:
    if path is None:
        return None
    mined = read_negatives(path)
    logger.info("hard negatives from %s (mined with %s, fingerprint %s)", path, mined.model_id,
                mined.model_fingerprint)
    return mined.negatives


def training_rows(dataset: BeirDataset, config: FinetuneConfig) -> tuple[TrainingRows, int]:
    """The trainer's rows and the rows of one epoch: every labelled pair (``rows=pair``), or one draw per
    epoch of one row per training query, stacked (``rows=query``)."""
    negatives = load_negatives(config.negatives_file)
    if config.rows == "query":
        return epoch_blocks(dataset, config, negatives, int(np.ceil(config.epochs)))
    rows = epoch_rows(dataset, config, negatives, 0)
    return rows, len(rows)


def _training_args(config: FinetuneConfig, steps_per_epoch: int, block: int, draws: int):
    """``rows=query``: the dataset stacks ``draws`` epochs of ``block`` rows, so the trainer's epoch is
    ``draws`` of ours."""
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    eval_steps = config.eval_steps or max(1, steps_per_epoch)
    return SentenceTransformerTrainingArguments(
        output_dir=str(config.output / "checkpoints"),
        num_train_epochs=config.epochs / draws,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        warmup_steps=int(config.warmup_ratio * steps_per_epoch * config.epochs),
        seed=config.seed,
        data_seed=config.seed,
        bf16=bf16,
        fp16=cuda and not bf16,
        batch_sampler=(epoch_blocks_sampler(block) if config.rows == "query" else BatchSamplers.NO_DUPLICATES),
        eval_strategy="steps",
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        logging_steps=max(1, min(10, steps_per_epoch // 5)),
        report_to="none",
        dataloader_drop_last=False,
        use_cpu=not cuda,
    )


def latest_checkpoint(folder: Path) -> str | None:
    checkpoints = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return str(checkpoints[-1]) if checkpoints else None


def train(config: FinetuneConfig) -> TrainResult:
    """Train, evaluate on dev, checkpoint, and export a plain sentence-transformers folder to ``output``."""
    set_seed(config.seed)
    output = _prepare_output(config)
    dataset = load_dataset(config.data)
    rows, block = training_rows(dataset, config)
    model = load_sentence_transformer(config.model).float()  # fp32 master weights, whatever the checkpoint holds
    model.max_seq_length = config.max_seq_length
    loss = make_loss(config, model, rows.known)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    steps_per_epoch = int(np.ceil(block / (config.batch_size * world)))
    best_dir = output / "checkpoints" / "best"
    early = BestModelEarlyStopping(DEV_METRIC, best_dir, config.early_stopping_patience,
                                   min_step=config.min_epochs * steps_per_epoch)
    if config.resume and (best_dir / "best_metric.json").is_file():
        early.best = json.loads((best_dir / "best_metric.json").read_text())["value"]
    evaluator = dev_evaluator(dataset, config)
    callbacks = [JsonLogCallback(output / LOG_FILE), early]
    if evaluator is not None:
        callbacks.append(DevProgressCallback(len(evaluator.queries), len(evaluator.corpus)))
    trainer = SentenceTransformerTrainer(
        model=model,
        args=_training_args(config, steps_per_epoch, block, len(rows) // block),
        train_dataset=rows.to_dataset(),
        loss=loss,
        evaluator=evaluator,
        callbacks=callbacks,
    )
    if hasattr(loss, "save_selection"):  # CET: keep the selection model with each checkpoint
        trainer.add_callback(SelectionModelCallback(loss))
    resume_from = latest_checkpoint(output / "checkpoints") if config.resume else None
    if resume_from and hasattr(loss, "load_selection") and (Path(resume_from) / "selection").is_dir():
        loss.load_selection(Path(resume_from) / "selection")
    if config.resume and resume_from is None:
        logger.warning("nothing to resume in %s: starting from scratch", output / "checkpoints")
    logger.info("training %s on %d rows per epoch (%d steps/epoch, loss %s, tau %.3g)", config.model, block,
                steps_per_epoch, config.loss, config.tau)
    start = time.perf_counter()
    state = trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - start
    if trainer.is_world_process_zero():
        _finish(model, loss, best_dir, output)
    samples = state.global_step * config.batch_size * world
    result = TrainResult(output, seconds, samples / seconds if seconds else 0.0, state.global_step,
                         None if early.best == -np.inf else float(early.best))
    if trainer.is_world_process_zero():
        atomic_write_json(output / "train_summary.json", {
            "train_seconds": seconds, "samples_per_s": result.samples_per_s, "steps": result.steps,
            "best_dev_ndcg@10": result.best_dev, "rows": block, "loss": config.loss, "tau": config.tau,
        })
        report_outputs(output)
    return result


def _prepare_output(config: FinetuneConfig) -> Path:
    """The output folder, with the run's config; refuses to overwrite checkpoints unless resuming."""
    output = Path(config.output)
    if output.exists() and (output / "checkpoints").exists() and not config.resume:
        if latest_checkpoint(output / "checkpoints"):
            raise RetrieverError(f"{output} already holds checkpoints: pass --resume to continue, or another --output")
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output / "train_config.json", json.loads(config.model_dump_json()))
    return output


def _finish(model, loss, best_dir: Path, output: Path) -> None:
    """Export the best dev model (else the last), CET's selection model, and the training curve."""
    final = model
    if (best_dir / "best_metric.json").is_file():
        final = load_sentence_transformer(str(best_dir))
    _export(final, output)
    if hasattr(loss, "save_selection"):
        loss.save_selection(output / "selection")
    plot_training_curve(output / LOG_FILE, output / "training_curve.png", DEV_METRIC)


def _export(model, output: Path) -> None:
    """Save the final model next to the checkpoints: staged in a temporary folder, then moved into place."""
    with atomic_dir(output, merge=True) as staging:
        model.save(str(staging))
