"""``train_reranker(config)``: SFT, listwise CL or pairwise (optionally CET-debiased) reranker training,
for cross-encoders and yes/no causal LMs, on transformers' ``Trainer`` (:mod:`training.query_trainer`'s
subclass, with its sampler, epoch sync, early stopping and log callbacks).

One Trainer subclass serves both architectures: the causal-LM scorer has no sentence-transformers class, so
``CrossEncoderTrainer`` would fit only half of them, and every objective reads the same ``PairScores`` of
either. Trainer brings the schedule, clipping, checkpoints with optimiser, schedule and RNG state,
``--resume``, logging and DDP under torchrun; this module adds the cross-encoder head's own learning rate
(``create_optimizer``), checkpoints as reranker folders (``_save``), CET's selection step before each
reranker step (``training_step``), and the export: the best dev checkpoint (else the last weights),
``log.jsonl``, the training-curve and gradient-weight PNGs and ``train_summary.json``.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch

from retriever.atomic import atomic_dir, atomic_write_json
from retriever.data import load_dataset
from retriever.errors import RetrieverError
from training.callbacks import BestModelEarlyStopping, plot_training_curve
from training.negatives import read_negatives
from training.query_trainer import (
    CHECKPOINTS,
    EpochOrderSampler,
    EpochSync,
    QueryTrainer,
    TimeBudget,
    chained_permutations,
    prepare_output,
    run_trainer,
    steps_per_epoch,
    training_arguments,
    world_size,
)
from training.rerank_config import RerankerConfig
from training.rerank_data import build_groups
from training.rerank_eval import DevEvaluator
from training.rerank_models import make_scorer, parameter_groups
from training.rerank_plots import plot_gradient_weights
from training.rerank_step import SELECTION, GroupCollator, RerankStep, SelectionModel
from training.run_log import LOG_FILE

logger = logging.getLogger(__name__)

DEV_METRIC = "eval_dev_ndcg@10"


class RerankTrainer(QueryTrainer):
    """:class:`QueryTrainer` with the head learning rate, reranker-folder checkpoints and CET's step."""

    def __init__(self, *args, head_learning_rate: float, selection: SelectionModel | None = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.head_learning_rate, self.selection = head_learning_rate, selection

    def create_optimizer(self, model=None):
        """AdamW with the cross-encoder's new head at its own learning rate (weight decay on every parameter)."""
        if self.optimizer is None:
            groups = parameter_groups(self.model, self.args.learning_rate, self.head_learning_rate)
            self.optimizer = torch.optim.AdamW(groups, weight_decay=self.args.weight_decay)
        return self.optimizer

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self.selection is not None:  # CET: S steps first; its scores weight the reranker's loss
            inputs = inputs | self.selection.step(self.model, inputs, self.accelerator.autocast)  # bf16 on CUDA
        return super().training_step(model, inputs, num_items_in_batch)

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        """A checkpoint is a reranker folder (``load_reranker`` reads it), plus CET's selection model."""
        if not self.args.should_save:
            return
        folder = Path(output_dir or self.args.output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save(folder)
        if self.selection is not None:
            self.selection.save(folder)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        """Nothing to load: the scorers were built from the checkpoint's folders (:func:`_load_scorers`)."""


def _load_scorers(config: RerankerConfig, resume_from: str | None):
    """The reranker being trained and, for CET, its selection model (both in training mode)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    start = resume_from or config.start_model
    scorer = make_scorer(config.arch, start, config.max_length).to(device).train()
    if config.arch == "causal-lm" and config.objective == "cl":
        scorer.score_kind = "yes"  # the paper's CL score: the yes logit
    if config.debias != "cet":
        return scorer, None
    sel_start = str(Path(resume_from) / SELECTION) if resume_from else (config.selection_model or config.start_model)
    return scorer, make_scorer(config.arch, sel_start, config.max_length).to(device).train()


def _check(config: RerankerConfig) -> None:
    if config.negatives_file is None:
        raise RetrieverError("train-reranker needs --negatives-file: mine them with 'retriever mine --index ...'")
    former = sorted((Path(config.output) / CHECKPOINTS).glob("step-*"))
    if former:
        raise RetrieverError(f"{config.output} holds checkpoints of the former reranker loop ({former[0].name}), "
                             "which cannot be resumed: use another --output")


def train_reranker(config: RerankerConfig) -> dict:
    """Train (or, with ``resume``, continue) a reranker into ``config.output``; rank 0 returns the summary."""
    _check(config)
    output, resume_from = prepare_output(config)
    torch.manual_seed(config.seed)  # the cross-encoder's new head is drawn from it, as before the move
    dataset = load_dataset(config.data)
    groups = build_groups(dataset, config.split, read_negatives(config.negatives_file).negatives, config.n_hard,
                          config.n_easy, config.hard_pool, config.max_groups, config.seed, config.rows)
    scorer, selection_scorer = _load_scorers(config, resume_from)
    per_epoch = steps_per_epoch(len(groups), config.batch_size)
    total = config.max_steps if config.max_steps > 0 else int(per_epoch * config.epochs)
    selection = None if selection_scorer is None else SelectionModel(selection_scorer, config, total)
    if selection is not None and resume_from:
        selection.load_state(Path(resume_from))
    dev = DevEvaluator(dataset, config) if config.dev_index and config.dev_split in dataset.splits else None
    sampler = EpochOrderSampler(len(groups), chained_permutations(len(groups), config.seed))
    rows = [{"row": g} for g in range(len(groups))]
    step = RerankStep(config)
    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    args = training_arguments(config, output, per_epoch, total, resume_from is not None, max_grad_norm=1.0,
                              eval_steps=config.eval_steps or total, eval_on_start=False, bf16=bf16)
    trainer = RerankTrainer(
        model=scorer, args=args, train_dataset=rows, eval_dataset=rows, data_collator=GroupCollator(dataset, groups),
        callbacks=[EpochSync(per_epoch, sampler)], step_loss=step, dev=dev, dev_metric=DEV_METRIC, sampler=sampler,
        schedule="warmup-linear", warmup_ratio=config.warmup_ratio, step_metrics=lambda _: step.metrics,
        head_learning_rate=config.head_learning_rate, selection=selection)
    early = BestModelEarlyStopping(DEV_METRIC, output / CHECKPOINTS / "best", config.early_stopping_patience)
    steps, seconds = run_trainer(trainer, early, TimeBudget(None), output, resume_from)
    if not trainer.is_world_process_zero():
        return {}
    _export_models(trainer, early.best_dir, output)
    plot_training_curve(output / LOG_FILE, output / "training_curve.png", DEV_METRIC)
    plot_gradient_weights({f"{config.arch} {config.objective}": output / LOG_FILE}, output / "gradient_weights.png")
    width = groups.kinds.shape[1]
    summary = {"train_seconds": seconds, "steps": steps, "groups": len(groups),
               "pairs_per_step": config.batch_size * width * world_size(),
               "samples_per_s": steps * config.batch_size * width * world_size() / max(seconds, 1e-9),
               "arch": config.arch, "objective": config.objective, "debias": config.debias,
               "best_dev_ndcg@10": early.best_value, "device": trainer.args.device.type}
    atomic_write_json(output / "train_summary.json", summary)
    return summary


def _export_models(trainer: RerankTrainer, best_dir: Path, output: Path) -> None:
    """The best dev checkpoint into ``output`` (else the last weights), and CET's selection model beside it,
    each through :func:`retriever.atomic.atomic_dir` (``merge`` keeps the run's checkpoints and logs)."""
    with atomic_dir(output, merge=True) as staging:
        if (best_dir / "config.json").is_file():
            for item in best_dir.iterdir():
                if item.name != "best_metric.json":
                    (shutil.copytree if item.is_dir() else shutil.copy2)(item, staging / item.name)
        else:
            trainer.model.save(staging)
    if trainer.selection is not None:
        with atomic_dir(output / SELECTION) as staging:
            trainer.selection.scorer.save(staging)
