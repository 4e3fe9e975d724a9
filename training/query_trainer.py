"""transformers' ``Trainer`` for the loops that train a query tower (ADORE) or soft tokens (SoftREPA-style)
against FROZEN, cached document vectors: the corpus is never re-encoded. The reranker loop
(:mod:`training.rerank_trainer`) subclasses the same Trainer.

Trainer brings the optimiser and schedule, gradient clipping, checkpoints with optimiser, schedule and RNG
state, resume (``--resume``), logging and DDP under torchrun. The methods bring a dataset of query rows, a
collator, a step loss (``compute_loss``) and a dev evaluation, run at step 0 and after every epoch (and at
the last step), with :class:`~training.callbacks.BestModelEarlyStopping` keeping the best model.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import ProgressCallback

from retriever.atomic import atomic_write_json
from retriever.errors import RetrieverError
from training.callbacks import BestModelEarlyStopping, JsonLogCallback, QuietProgressCallback
from training.run_log import LOG_FILE, fresh_log
from training.trainer import latest_checkpoint

logger = logging.getLogger(__name__)
CHECKPOINTS = "checkpoints"
StepLoss = Callable[[torch.nn.Module, dict], Tensor]


def chained_permutations(n: int, seed: int) -> Callable[[int], np.ndarray]:
    """Epoch ``e`` visits rows in the ``e``-th permutation drawn from one generator seeded once (the order the
    former ADORE loop used)."""
    def order(epoch: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        for _ in range(epoch):
            rng.permutation(n)
        return rng.permutation(n)
    return order


def reseeded_permutations(n: int, seed: int) -> Callable[[int], np.ndarray]:
    """Epoch ``e`` visits rows in the permutation of a generator seeded ``seed + e`` (the soft-token order)."""
    return lambda epoch: np.random.default_rng(seed + epoch).permutation(n)


class EpochOrderSampler(Sampler[int]):
    """A seeded row order per epoch: a function of the epoch alone, so a resumed run sees the same batches."""

    def __init__(self, n: int, order: Callable[[int], np.ndarray]) -> None:
        self.n, self.order, self.epoch = n, order, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(self.order(self.epoch).tolist())


class EpochRows(Dataset):
    """The training rows of the current epoch, ``build(epoch)`` (soft tokens' ``rows=query`` redraws each
    query's positive every epoch); an item is its row number, for the collator."""

    def __init__(self, build: Callable[[int], Any]) -> None:
        self.build, self.epoch, self.rows = build, 0, build(0)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.rows = epoch, self.build(epoch)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return {"row": i}


class EpochSync(TrainerCallback):
    """Tells the sampler (and a dataset whose rows change per epoch) the epoch that begins, counted from the
    global step, so that it is right after a resume and on every process."""

    def __init__(self, steps_per_epoch: int, *targets) -> None:
        self.steps_per_epoch, self.targets = steps_per_epoch, targets

    def on_epoch_begin(self, args, state, control, **kwargs):
        for target in self.targets:
            target.set_epoch(state.global_step // self.steps_per_epoch)


class TimeBudget(TrainerCallback):
    """Stops at the first dev evaluation after ``seconds`` of training (the evaluation at step 0 excluded)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds, self.start = seconds, None

    def on_step_begin(self, args, state, control, **kwargs):
        if self.start is None:
            self.start = time.perf_counter()

    def on_evaluate(self, args, state, control, **kwargs):
        if self.seconds and self.start is not None and time.perf_counter() - self.start > self.seconds:
            logger.warning("time budget of %.0f s spent at step %d: stopping (best kept)", self.seconds,
                           state.global_step)
            control.should_training_stop = True


def warmup_then_linear_decay(total: int, warmup: int, step: int) -> float:
    """The lr factor of the former ADORE loop: ``(step + 1) / warmup`` while warming up, then linear to 0."""
    return min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup)))


class QueryTrainer(Trainer):
    """A Trainer whose loss is ``step_loss(model, batch)`` and whose evaluation is ``dev(model)`` (nDCG@10
    against the frozen document vectors). ``schedule``: ``None`` keeps the lr constant, ``"warmup-linear"``
    is :func:`warmup_then_linear_decay`. AdamW's weight decay applies to every parameter, as in the former
    loops (Trainer's default exempts biases and LayerNorm)."""

    def __init__(self, *args, step_loss: StepLoss, dev: Callable | None, dev_metric: str, sampler: Sampler,
                 schedule: str | None = None, warmup_ratio: float = 0.0,
                 step_metrics: Callable[[torch.nn.Module], dict] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.step_loss, self.dev, self.dev_metric, self.sampler = step_loss, dev, dev_metric, sampler
        self.schedule, self.warmup_ratio, self.step_metrics = schedule, warmup_ratio, step_metrics

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = self.step_loss(model, inputs)
        return (loss, None) if return_outputs else loss

    def _get_train_sampler(self, train_dataset=None):
        return self.sampler

    def get_decay_parameter_names(self, model) -> list[str]:
        return [name for name, _ in model.named_parameters()]

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None and self.schedule == "warmup-linear":
            warmup = max(1, int(self.warmup_ratio * num_training_steps))
            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer or self.optimizer, partial(warmup_then_linear_decay, num_training_steps, warmup))
        return super().create_scheduler(num_training_steps, optimizer)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict:
        metrics = {} if self.dev is None else {self.dev_metric: self.dev(self.model)}
        if metrics:
            logger.info("step %d: dev nDCG@10 %.4f", self.state.global_step, metrics[self.dev_metric])
            self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def log(self, logs: dict, start_time: float | None = None) -> None:
        if "loss" in logs and self.step_metrics is not None:
            logs = logs | self.step_metrics(self.model)
        super().log(logs, start_time)


def prepare_output(config) -> tuple[Path, str | None]:
    """The output folder (with ``train_config.json``) and the checkpoint to resume from; a run that does not
    resume starts an empty log and refuses to overwrite another run's checkpoints."""
    output = Path(config.output)
    found = latest_checkpoint(output / CHECKPOINTS)
    if found and not config.resume:
        raise RetrieverError(f"{output} already holds checkpoints: pass --resume to continue, or another --output")
    if config.resume and not found:
        logger.warning("nothing to resume in %s: starting from scratch", output / CHECKPOINTS)
    if not found:
        fresh_log(output)
    atomic_write_json(output / "train_config.json", json.loads(config.model_dump_json()))
    return output, found


def training_arguments(config, output: Path, steps_per_epoch: int, max_steps: int, resuming: bool,
                       max_grad_norm: float, eval_steps: int | None = None, eval_on_start: bool | None = None,
                       bf16: bool = False) -> TrainingArguments:
    """Evaluation every ``eval_steps`` (default: every epoch) and at the last step (plus step 0, by default
    unless resuming), a log entry every step, checkpoints every ``save_steps``; fp32 unless ``bf16`` (the
    former query loops used no autocast)."""
    return TrainingArguments(
        output_dir=str(output / CHECKPOINTS), max_steps=max_steps, per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate, weight_decay=0.01, optim="adamw_torch", max_grad_norm=max_grad_norm,
        lr_scheduler_type="constant", eval_strategy="steps", eval_steps=eval_steps or steps_per_epoch,
        eval_on_start=not resuming if eval_on_start is None else eval_on_start, save_strategy="steps",
        save_steps=config.save_steps, save_total_limit=2, logging_steps=1, report_to="none", seed=config.seed,
        data_seed=config.seed, remove_unused_columns=False, dataloader_drop_last=False, bf16=bf16,
        use_cpu=not torch.cuda.is_available(), ddp_find_unused_parameters=False)


def freeze_unused_pooler(model) -> None:
    """sentence-transformers pools token embeddings and never reads BERT's pooler: its parameters get no
    gradient (AdamW skipped them in the former loops too), and DDP refuses parameters that get none."""
    for name, parameter in model.named_parameters():
        if ".pooler." in name:
            parameter.requires_grad = False


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def steps_per_epoch(n_rows: int, batch_size: int) -> int:
    """Optimiser steps per epoch of each process (the batches of an epoch are dealt out to the processes)."""
    return math.ceil(math.ceil(n_rows / batch_size) / world_size())


def run_trainer(trainer: QueryTrainer, early: BestModelEarlyStopping, budget: TimeBudget, output: Path,
                resume_from: str | None) -> tuple[int, float]:
    """Train (resuming ``resume_from``); return the steps run and the training seconds."""
    trainer.remove_callback(ProgressCallback)
    for callback in (QuietProgressCallback(), JsonLogCallback(output / LOG_FILE), early, budget):
        trainer.add_callback(callback)
    if resume_from:
        early.restore(Path(resume_from))
    start = time.perf_counter()
    state = trainer.train(resume_from_checkpoint=resume_from)
    return state.global_step, time.perf_counter() - start
