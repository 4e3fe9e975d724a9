"""Trainer callbacks: a JSON-lines log, a PNG training curve, and early stopping that keeps the best model."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

from retriever.atomic import atomic_dir
from retriever.evaluate.plots import new_figure, save_png
from training.run_log import LOG_FILE, append_log, read_log

logger = logging.getLogger(__name__)
STOPPING_FILE = "early_stopping.json"


class JsonLogCallback(TrainerCallback):
    """Appends every logged dict (loss, learning rate, dev metrics) to ``log.jsonl``; survives resumes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        append_log(self.path, {"step": state.global_step, "epoch": state.epoch, **logs})


def plot_training_curve(log_path: Path, png_path: Path, metric: str) -> Path | None:
    """Training loss and the dev metric against the step, from ``log.jsonl``."""
    rows = read_log(log_path)
    loss = {r["step"]: r["loss"] for r in rows if "loss" in r}
    dev = {r["step"]: r[metric] for r in rows if metric in r}
    if not loss and not dev:
        return None
    fig, ax = new_figure((6.5, 4))
    ax.plot(list(loss), list(loss.values()), color="tab:blue", label="train loss")
    ax.set(xlabel="step", ylabel="train loss")
    if dev:
        twin = ax.twinx()
        twin.plot(list(dev), list(dev.values()), "o-", color="tab:orange", label=metric)
        twin.set_ylabel(metric)
    fig.legend(loc="upper right", fontsize=8)
    return save_png(fig, Path(png_path), dpi=110)


def report_outputs(output: Path) -> None:
    """Say where the run's log and curve are (stderr, through logging, so ``--json`` stdout stays clean)."""
    for name in (LOG_FILE, "training_curve.png"):
        path = Path(output) / name
        if path.is_file():
            logger.info("%s: %s", name, path.resolve())


class DevProgressCallback(TrainerCallback):
    """Announces each dev evaluation (it encodes a dev corpus and can take minutes) and its result."""

    def __init__(self, n_queries: int, n_docs: int) -> None:
        self.n_queries, self.n_docs = n_queries, n_docs

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_evaluate and state.is_world_process_zero:
            logger.info("step %d: dev evaluation (%d queries over %d documents)...", state.global_step,
                        self.n_queries, self.n_docs)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if state.is_world_process_zero and metrics:
            shown = {k: round(v, 4) for k, v in metrics.items() if k.endswith("ndcg@10")}
            logger.info("step %d: dev %s", state.global_step, shown)


class BestModelEarlyStopping(TrainerCallback):
    """Stops after ``patience`` evaluations without improvement; saves each new best model to ``best_dir``."""

    def __init__(self, metric: str, best_dir: Path, patience: int | None, min_step: int = 0) -> None:
        self.metric, self.min_step = metric, min_step
        self.best_dir = Path(best_dir)
        self.patience = patience
        self.best = -math.inf
        self.bad_evals = 0
        self.best_step: int | None = None
        self.stopped = False

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        value = (metrics or {}).get(self.metric)
        if value is None:
            return
        if value > self.best:
            self.best, self.bad_evals, self.best_step = value, 0, state.global_step
            if state.is_world_process_zero and model is not None:
                with atomic_dir(self.best_dir) as staging:  # a crash never leaves half a best model
                    model.save(str(staging))
                    (staging / "best_metric.json").write_text(
                        json.dumps({"metric": self.metric, "value": value, "step": state.global_step}))
            return
        self.bad_evals += 1
        if self.patience is not None and self.bad_evals >= self.patience and state.global_step >= self.min_step:
            logger.info("early stopping: %s did not improve for %d evaluations", self.metric, self.bad_evals)
            control.should_training_stop = self.stopped = True

    @property
    def best_value(self) -> float | None:
        return None if self.best == -math.inf else float(self.best)

    def on_save(self, args, state, control, **kwargs):
        """Keep the best value and the evaluations without improvement with the checkpoint, for a resume."""
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            (folder / STOPPING_FILE).write_text(json.dumps(
                {"best": self.best, "bad_evals": self.bad_evals, "best_step": self.best_step}))

    def restore(self, checkpoint: Path) -> None:
        """The state :meth:`on_save` kept in ``checkpoint`` (nothing when it holds none)."""
        path = Path(checkpoint) / STOPPING_FILE
        if path.is_file():
            saved = json.loads(path.read_text())
            self.best, self.bad_evals, self.best_step = saved["best"], saved["bad_evals"], saved["best_step"]


class QuietProgressCallback(ProgressCallback):
    """Trainer's progress bars, without printing every logged dict to stdout (``--json`` keeps stdout for the
    summary; the dicts are in ``log.jsonl``)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        logger.debug("%s", logs)


class SelectionModelCallback(TrainerCallback):
    """CET: saves the selection model into each checkpoint (``selection/``) so that a resumed run continues it."""

    def __init__(self, loss) -> None:
        self.loss = loss

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.loss.save_selection(Path(args.output_dir) / f"checkpoint-{state.global_step}" / "selection")
