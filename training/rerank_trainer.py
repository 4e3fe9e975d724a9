"""``train_reranker(config)``: SFT, listwise CL or pairwise (optionally CET-debiased) reranker training,
for cross-encoders and yes/no causal LMs, with checkpoints, resume, dev evaluation and per-step gradient
weights of positives, hard and easy negatives."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from contextlib import nullcontext
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from retriever.atomic import atomic_write_json
from retriever.data import BeirDataset, load_dataset
from retriever.errors import RetrieverError
from training import checkpoints
from training.callbacks import plot_training_curve
from training.loop import epoch_batches, total_steps
from training.losses import CETPairLoss
from training.losses.cet import weights_on_hard
from training.rerank_config import RerankerConfig
from training.rerank_data import EASY, HARD, POSITIVE, RerankGroups, build_groups
from training.rerank_models import make_scorer, parameter_groups
from training.rerank_objectives import objective
from training.rerank_plots import plot_gradient_weights
from training.run_log import LOG_FILE, append_log

logger = logging.getLogger(__name__)

DEV_METRIC = "eval_dev_ndcg@10"


def _schedule(optimizer, total: int, warmup_ratio: float):
    warmup = max(1, int(warmup_ratio * total))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup))))


def eval_scores(scorer, queries: list[str], documents: list[str]) -> torch.Tensor:
    """Scores without dropout or gradient; the scorer goes back to training mode."""
    scorer.eval()
    with torch.no_grad():
        scores = scorer(queries, documents).scores.float()
    scorer.train()
    return scores


def step_loss(config: RerankerConfig, scores, log_p_yes, log_p_no, labels, other=None, hard=None):
    """The objective's loss and each document's gradient weight, both ``[B, G]``-shaped inputs."""
    return objective(config.objective).step(config, scores, log_p_yes, log_p_no, labels, other, hard)


def weight_summary(weights: torch.Tensor, kinds: np.ndarray) -> dict[str, float]:
    w = weights.detach().float().cpu().numpy()
    out = {}
    for name, kind in (("weight_positive", POSITIVE), ("weight_hard", HARD), ("weight_easy", EASY)):
        mask = kinds == kind
        if mask.any():
            out[name] = float(w[mask].mean())
    return out


def score_batches(scorer, queries: list[str], documents: list[str], batch_size: int = 64) -> np.ndarray:
    """Scores without gradient, in batches (dev evaluation)."""
    out = []
    with torch.no_grad():
        for start in range(0, len(queries), batch_size):
            out.append(scorer(queries[start:start + batch_size], documents[start:start + batch_size])
                       .scores.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


class DevEvaluator:
    """nDCG@10 of the scorer reranking the top ``dev_depth`` of ``dev_index`` for the dev queries."""

    def __init__(self, dataset: BeirDataset, config: RerankerConfig) -> None:
        from retriever.pipeline import open_index, retrieve

        index, _, encoder = open_index(config.dev_index)
        self.qrels = dataset.qrels(config.dev_split)
        self.run = retrieve(index, encoder, {q: dataset.queries[q] for q in self.qrels}, k=config.dev_depth)
        self.pairs = [(q, d) for q, hits in self.run.items() for d in hits]
        self.queries = [dataset.queries[q] for q, _ in self.pairs]
        self.docs = dataset.doc_texts([d for _, d in self.pairs])

    def __call__(self, scorer) -> float:
        from retriever.evaluate import evaluate_run

        scorer.eval()
        scores = score_batches(scorer, self.queries, self.docs)
        scorer.train()
        run: dict[str, dict[str, float]] = {q: {} for q in self.run}
        for (q, d), s in zip(self.pairs, scores.tolist(), strict=True):
            run[q][d] = s
        return evaluate_run(self.qrels, run, ("ndcg@10",))["ndcg@10"]


def train_reranker(config: RerankerConfig) -> dict:
    output = Path(config.output)
    ckpt_dir = output / "checkpoints"
    resume_from = checkpoints.latest(ckpt_dir) if config.resume else None
    if not config.resume and checkpoints.latest(ckpt_dir) is not None:
        raise RetrieverError(f"{output} already holds checkpoints: pass --resume to continue, or another --output")
    if config.negatives_file is None:
        raise RetrieverError("train-reranker needs --negatives-file: mine them with 'retriever mine --index ...'")
    from training.negatives import read_negatives

    torch.manual_seed(config.seed)
    dataset = load_dataset(config.data)
    groups = build_groups(dataset, config.split, read_negatives(config.negatives_file).negatives, config.n_hard,
                          config.n_easy, config.hard_pool, config.max_groups, config.seed, config.rows)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cet = config.debias == "cet"
    start = str(resume_from / "model") if resume_from else config.start_model
    scorer = make_scorer(config.arch, start, config.max_length).to(device).train()
    if config.arch == "causal-lm" and config.objective == "cl":
        scorer.score_kind = "yes"  # the paper's CL score: the yes logit
    selection = None
    if cet:
        sel_start = str(resume_from / "selection") if resume_from else (config.selection_model or config.start_model)
        selection = make_scorer(config.arch, sel_start, config.max_length).to(device).train()

    total = total_steps(len(groups), config)
    lrs = (config.learning_rate, config.head_learning_rate)
    optimizers: dict = {"model": torch.optim.AdamW(parameter_groups(scorer, *lrs))}
    optimizers["model_schedule"] = _schedule(optimizers["model"], total, config.warmup_ratio)
    if selection is not None:
        optimizers["selection"] = torch.optim.AdamW(parameter_groups(selection, *lrs))
        optimizers["selection_schedule"] = _schedule(optimizers["selection"], total, config.warmup_ratio)
    state = {"step": 0, "best": -math.inf, "bad_evals": 0, "seconds": 0.0}
    if resume_from is not None:
        state |= checkpoints.load_state(resume_from, optimizers)
        logger.info("resuming from %s (step %d of %d)", resume_from, state["step"], total)
    elif resume_from is None and config.resume:
        logger.warning("nothing to resume in %s: starting from scratch", ckpt_dir)
    output.mkdir(parents=True, exist_ok=True)
    log_path = output / LOG_FILE
    if resume_from is None:
        log_path.unlink(missing_ok=True)
        atomic_write_json(output / "train_config.json", json.loads(config.model_dump_json()))
    dev = DevEvaluator(dataset, config) if config.dev_index and config.dev_split in dataset.splits else None
    best_dir = ckpt_dir / "best"

    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and torch.cuda.is_bf16_supported()
                else nullcontext())
    width = groups.kinds.shape[1]
    labels_all = torch.from_numpy(groups.labels)
    order = epoch_batches(list(range(len(groups))), config.batch_size, total, config.seed)
    batches = islice(order, state["step"], None)
    tick = time.perf_counter()
    step = state["step"]
    bar = tqdm(batches, total=total, initial=state["step"], desc=f"{config.arch} {config.objective}")
    for step, batch in enumerate(bar, start=state["step"] + 1):
        queries, documents = _texts(dataset, groups, batch)
        labels = labels_all[batch].to(device)
        other = hard = None
        if selection is not None:  # CET weights: both models in eval mode, no gradient (official train.py)
            hard = torch.from_numpy(groups.kinds[batch][:, 1:] == HARD).to(device)
            with autocast:
                other = eval_scores(selection, queries, documents).view(len(batch), width)
                r_eval = eval_scores(scorer, queries, documents).view(len(batch), width)
                sel_scores = selection(queries, documents).scores.view(len(batch), width)
            CETPairLoss(config.debias_ratio)(sel_scores, r_eval, hard=hard).backward()
            torch.nn.utils.clip_grad_norm_(selection.parameters(), 1.0)
            optimizers["selection"].step()
            optimizers["selection_schedule"].step()
            optimizers["selection"].zero_grad()
        with autocast:
            out = scorer(queries, documents)
        scores = out.scores.view(len(batch), width)
        loss, weights = step_loss(config, scores, out.log_p_yes.view(len(batch), width),
                                  out.log_p_no.view(len(batch), width), labels, other, hard)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(scorer.parameters(), 1.0)
        optimizers["model"].step()
        optimizers["model_schedule"].step()
        optimizers["model"].zero_grad()
        entry = {"step": step, "loss": float(loss.detach()),
                 "learning_rate": optimizers["model_schedule"].get_last_lr()[0]}
        entry |= weight_summary(weights, groups.kinds[batch])
        if other is not None:
            entry["cet_weight_hard"] = float(weights_on_hard(other[:, 1:], config.debias_ratio, hard)[hard].mean())
        bar.set_postfix(loss=f"{entry['loss']:.4f}")
        if dev is not None and ((config.eval_steps and step % config.eval_steps == 0) or step == total):
            entry[DEV_METRIC] = dev(scorer)
            if entry[DEV_METRIC] > state["best"]:
                state["best"], state["bad_evals"] = entry[DEV_METRIC], 0
                _export(scorer, best_dir)
            else:
                state["bad_evals"] += 1
        append_log(log_path, entry)
        state["seconds"] += time.perf_counter() - tick
        tick = time.perf_counter()
        stop = config.early_stopping_patience is not None and state["bad_evals"] >= config.early_stopping_patience
        if step % config.save_steps == 0 or step == total or stop:
            models = {"model": scorer} | ({"selection": selection} if selection is not None else {})
            checkpoints.save(ckpt_dir, step, models, optimizers, {k: v for k, v in state.items() if k != "step"})
            tick = time.perf_counter()
        if stop:
            logger.info("early stopping at step %d", step)
            break
    final_step = step
    if (best_dir / "config.json").is_file():
        _copy_folder(best_dir, output)
    else:
        _export(scorer, output)
    if selection is not None:
        _export(selection, output / "selection")
    plot_training_curve(log_path, output / "training_curve.png", DEV_METRIC)
    plot_gradient_weights({f"{config.arch} {config.objective}": log_path}, output / "gradient_weights.png")
    summary = {"train_seconds": state["seconds"], "steps": final_step, "groups": len(groups),
               "pairs_per_step": config.batch_size * width,
               "samples_per_s": final_step * config.batch_size * width / max(state["seconds"], 1e-9),
               "arch": config.arch, "objective": config.objective, "debias": config.debias,
               "best_dev_ndcg@10": None if state["best"] == -math.inf else state["best"], "device": str(device)}
    atomic_write_json(output / "train_summary.json", summary)
    return summary


def _texts(dataset: BeirDataset, groups: RerankGroups, batch: list[int]) -> tuple[list[str], list[str]]:
    width = groups.kinds.shape[1]
    queries = [dataset.queries[groups.query_ids[g]] for g in batch for _ in range(width)]
    return queries, dataset.doc_texts([d for g in batch for d in groups.docs[g]])


def _export(scorer, folder: Path) -> None:
    """Save next to nothing half-written: a staging folder, then each item moved into place."""
    staging = folder.with_name(folder.name + ".export-tmp")
    shutil.rmtree(staging, ignore_errors=True)
    scorer.save(staging)
    _copy_folder(staging, folder, move=True)
    shutil.rmtree(staging, ignore_errors=True)


def _copy_folder(source: Path, target: Path, move: bool = False) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.name in ("checkpoints",):
            continue
        destination = target / item.name
        if destination.is_dir():
            shutil.rmtree(destination)
        if move:
            os.replace(item, destination)
        elif item.is_dir():
            shutil.copytree(item, destination)
        else:
            shutil.copy2(item, destination)
