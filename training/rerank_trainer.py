"""``train_reranker(config)``: SFT, listwise CL or pairwise (optionally CET-debiased) reranker training,
for cross-encoders and yes/no causal LMs, with checkpoints, resume, dev evaluation and per-step gradient
weights of positives, hard and easy negatives."""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import torch
from tqdm.auto import tqdm

from retriever.atomic import atomic_dir, atomic_write_json
from retriever.data import BeirDataset, load_dataset
from retriever.errors import RetrieverError
from training import checkpoints
from training.callbacks import plot_training_curve
from training.loop import epoch_batches, total_steps
from training.losses import CETPairLoss
from training.losses.cet import weights_on_hard
from training.rerank_config import RerankerConfig
from training.rerank_data import HARD, RerankGroups, build_groups, weight_summary
from training.rerank_eval import DevEvaluator, eval_scores
from training.rerank_models import make_scorer, parameter_groups
from training.rerank_objectives import objective
from training.rerank_plots import plot_gradient_weights
from training.run_log import LOG_FILE, append_log

logger = logging.getLogger(__name__)

DEV_METRIC = "eval_dev_ndcg@10"


@dataclass
class _Session:
    """What one training run works with, from setup to export."""

    config: RerankerConfig
    dataset: BeirDataset
    groups: RerankGroups
    device: torch.device
    scorer: torch.nn.Module
    selection: torch.nn.Module | None
    optimizers: dict
    state: dict
    total: int
    dev: DevEvaluator | None

    @property
    def output(self) -> Path:
        return Path(self.config.output)

    @property
    def ckpt_dir(self) -> Path:
        return self.output / "checkpoints"

    @property
    def best_dir(self) -> Path:
        return self.ckpt_dir / "best"

    @property
    def log_path(self) -> Path:
        return self.output / LOG_FILE

    @property
    def width(self) -> int:
        return self.groups.kinds.shape[1]

    def models(self) -> dict:
        return {"model": self.scorer} | ({"selection": self.selection} if self.selection is not None else {})


def _schedule(optimizer, total: int, warmup_ratio: float):
    warmup = max(1, int(warmup_ratio * total))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup))))


def step_loss(config: RerankerConfig, scores, log_p_yes, log_p_no, labels, other=None, hard=None):
    """The objective's loss and each document's gradient weight, both ``[B, G]``-shaped inputs."""
    return objective(config.objective).step(config, scores, log_p_yes, log_p_no, labels, other, hard)


def _resume_point(config: RerankerConfig) -> Path | None:
    """The checkpoint to resume from (None: start fresh); refuses to overwrite a run's checkpoints."""
    ckpt_dir = Path(config.output) / "checkpoints"
    if not config.resume and checkpoints.latest(ckpt_dir) is not None:
        raise RetrieverError(f"{config.output} already holds checkpoints: pass --resume to continue, "
                             "or another --output")
    if config.negatives_file is None:
        raise RetrieverError("train-reranker needs --negatives-file: mine them with 'retriever mine --index ...'")
    resume_from = checkpoints.latest(ckpt_dir) if config.resume else None
    if resume_from is None and config.resume:
        logger.warning("nothing to resume in %s: starting from scratch", ckpt_dir)
    return resume_from


def _load_scorers(config: RerankerConfig, resume_from: Path | None, device: torch.device):
    """The reranker being trained and, for CET, its selection model (both in training mode)."""
    start = str(resume_from / "model") if resume_from else config.start_model
    scorer = make_scorer(config.arch, start, config.max_length).to(device).train()
    if config.arch == "causal-lm" and config.objective == "cl":
        scorer.score_kind = "yes"  # the paper's CL score: the yes logit
    if config.debias != "cet":
        return scorer, None
    sel_start = str(resume_from / "selection") if resume_from else (config.selection_model or config.start_model)
    return scorer, make_scorer(config.arch, sel_start, config.max_length).to(device).train()


def _optimizers(config: RerankerConfig, scorer, selection, total: int) -> dict:
    """AdamW and its warm-up/decay schedule for each trained model."""
    lrs = (config.learning_rate, config.head_learning_rate)
    out: dict = {}
    for name, model in (("model", scorer), ("selection", selection)):
        if model is not None:
            out[name] = torch.optim.AdamW(parameter_groups(model, *lrs))
            out[f"{name}_schedule"] = _schedule(out[name], total, config.warmup_ratio)
    return out


def _setup(config: RerankerConfig, resume_from: Path | None) -> _Session:
    from training.negatives import read_negatives

    torch.manual_seed(config.seed)
    dataset = load_dataset(config.data)
    groups = build_groups(dataset, config.split, read_negatives(config.negatives_file).negatives, config.n_hard,
                          config.n_easy, config.hard_pool, config.max_groups, config.seed, config.rows)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    scorer, selection = _load_scorers(config, resume_from, device)
    total = total_steps(len(groups), config)
    optimizers = _optimizers(config, scorer, selection, total)
    state = {"step": 0, "best": -math.inf, "bad_evals": 0, "seconds": 0.0}
    if resume_from is not None:
        state |= checkpoints.load_state(resume_from, optimizers)
        logger.info("resuming from %s (step %d of %d)", resume_from, state["step"], total)
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    if resume_from is None:
        (output / LOG_FILE).unlink(missing_ok=True)
        atomic_write_json(output / "train_config.json", json.loads(config.model_dump_json()))
    dev = DevEvaluator(dataset, config) if config.dev_index and config.dev_split in dataset.splits else None
    return _Session(config, dataset, groups, device, scorer, selection, optimizers, state, total, dev)


def _autocast(device: torch.device):
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def _selection_step(s: _Session, queries: list[str], documents: list[str], batch: list[int]):
    """CET: the selection model's pairwise step; returns its eval-mode scores and the hard-negative mask
    (both models scored in eval mode without gradient, as the official train.py does)."""
    n = len(batch)
    hard = torch.from_numpy(s.groups.kinds[batch][:, 1:] == HARD).to(s.device)
    with _autocast(s.device):
        other = eval_scores(s.selection, queries, documents).view(n, s.width)
        r_eval = eval_scores(s.scorer, queries, documents).view(n, s.width)
        sel_scores = s.selection(queries, documents).scores.view(n, s.width)
    CETPairLoss(s.config.debias_ratio)(sel_scores, r_eval, hard=hard).backward()
    torch.nn.utils.clip_grad_norm_(s.selection.parameters(), 1.0)
    s.optimizers["selection"].step()
    s.optimizers["selection_schedule"].step()
    s.optimizers["selection"].zero_grad()
    return other, hard


def _model_step(s: _Session, batch: list[int], step: int) -> dict:
    """One optimiser step of the reranker (after the selection model's, for CET); the log entry."""
    queries, documents = _texts(s.dataset, s.groups, batch)
    labels = torch.from_numpy(s.groups.labels[batch]).to(s.device)
    other, hard = _selection_step(s, queries, documents, batch) if s.selection is not None else (None, None)
    with _autocast(s.device):
        out = s.scorer(queries, documents)
    shape = (len(batch), s.width)
    loss, weights = step_loss(s.config, out.scores.view(shape), out.log_p_yes.view(shape), out.log_p_no.view(shape),
                              labels, other, hard)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(s.scorer.parameters(), 1.0)
    s.optimizers["model"].step()
    s.optimizers["model_schedule"].step()
    s.optimizers["model"].zero_grad()
    entry = {"step": step, "loss": float(loss.detach()),
             "learning_rate": s.optimizers["model_schedule"].get_last_lr()[0]}
    entry |= weight_summary(weights, s.groups.kinds[batch])
    if other is not None:
        entry["cet_weight_hard"] = float(weights_on_hard(other[:, 1:], s.config.debias_ratio, hard)[hard].mean())
    return entry


def _evaluate(s: _Session, entry: dict, step: int) -> None:
    """Dev nDCG@10 at every ``eval_steps`` and at the end; the best scorer so far goes to ``best_dir``."""
    every = s.config.eval_steps
    if s.dev is None or not ((every and step % every == 0) or step == s.total):
        return
    entry[DEV_METRIC] = s.dev(s.scorer)
    if entry[DEV_METRIC] > s.state["best"]:
        s.state["best"], s.state["bad_evals"] = entry[DEV_METRIC], 0
        _export(s.scorer, s.best_dir)
    else:
        s.state["bad_evals"] += 1


def _train_loop(s: _Session) -> int:
    """Steps from the resumed one to the last (or early stopping); returns the last step run."""
    config, state = s.config, s.state
    order = epoch_batches(list(range(len(s.groups))), config.batch_size, s.total, config.seed)
    tick, step = time.perf_counter(), state["step"]
    bar = tqdm(islice(order, state["step"], None), total=s.total, initial=state["step"],
               desc=f"{config.arch} {config.objective}")
    for step, batch in enumerate(bar, start=state["step"] + 1):
        entry = _model_step(s, batch, step)
        bar.set_postfix(loss=f"{entry['loss']:.4f}")
        _evaluate(s, entry, step)
        append_log(s.log_path, entry)
        state["seconds"] += time.perf_counter() - tick
        stop = config.early_stopping_patience is not None and state["bad_evals"] >= config.early_stopping_patience
        if step % config.save_steps == 0 or step == s.total or stop:
            checkpoints.save(s.ckpt_dir, step, s.models(), s.optimizers,
                             {k: v for k, v in state.items() if k != "step"})
        tick = time.perf_counter()
        if stop:
            logger.info("early stopping at step %d", step)
            break
    return step


def _finish(s: _Session, final_step: int) -> dict:
    """Export the best dev checkpoint (else the last weights), the plots and the summary."""
    if (s.best_dir / "config.json").is_file():
        with atomic_dir(s.output, merge=True) as staging:
            for item in s.best_dir.iterdir():
                (shutil.copytree if item.is_dir() else shutil.copy2)(item, staging / item.name)
    else:
        _export(s.scorer, s.output, merge=True)
    if s.selection is not None:
        _export(s.selection, s.output / "selection")
    plot_training_curve(s.log_path, s.output / "training_curve.png", DEV_METRIC)
    plot_gradient_weights({f"{s.config.arch} {s.config.objective}": s.log_path}, s.output / "gradient_weights.png")
    seconds = s.state["seconds"]
    summary = {"train_seconds": seconds, "steps": final_step, "groups": len(s.groups),
               "pairs_per_step": s.config.batch_size * s.width,
               "samples_per_s": final_step * s.config.batch_size * s.width / max(seconds, 1e-9),
               "arch": s.config.arch, "objective": s.config.objective, "debias": s.config.debias,
               "best_dev_ndcg@10": None if s.state["best"] == -math.inf else s.state["best"],
               "device": str(s.device)}
    atomic_write_json(s.output / "train_summary.json", summary)
    return summary


def train_reranker(config: RerankerConfig) -> dict:
    session = _setup(config, _resume_point(config))
    return _finish(session, _train_loop(session))


def _texts(dataset: BeirDataset, groups: RerankGroups, batch: list[int]) -> tuple[list[str], list[str]]:
    width = groups.kinds.shape[1]
    queries = [dataset.queries[groups.query_ids[g]] for g in batch for _ in range(width)]
    return queries, dataset.doc_texts([d for g in batch for d in groups.docs[g]])


def _export(scorer, folder: Path, merge: bool = False) -> None:
    """Save through :func:`retriever.atomic.atomic_dir`: never half a model. ``merge`` keeps what else the
    folder holds (the run's checkpoints and logs); otherwise the folder is replaced whole."""
    with atomic_dir(folder, merge=merge) as staging:
        scorer.save(staging)
