"""One reranker training step on transformers' Trainer: the collator that turns training groups into
(query, document) pairs, the objective's loss (``compute_loss``) with the step's gradient-weight summary, and
CET's selection model, which takes its own optimiser step before the reranker's."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor

from retriever.data import BeirDataset
from training.losses import CETPairLoss
from training.losses.cet import weights_on_hard
from training.query_trainer import warmup_then_linear_decay
from training.rerank_config import RerankerConfig
from training.rerank_data import HARD, RerankGroups, weight_summary
from training.rerank_eval import eval_scores
from training.rerank_models import parameter_groups
from training.rerank_objectives import objective

SELECTION = "selection"  # the selection model's folder, in a checkpoint and in the exported reranker
SELECTION_STATE = "selection_optimizer.pt"


def group_texts(dataset: BeirDataset, groups: RerankGroups, batch: list[int]) -> tuple[list[str], list[str]]:
    """The (query, document) texts of the groups ``batch``, group by group, positive first."""
    width = groups.kinds.shape[1]
    queries = [dataset.queries[groups.query_ids[g]] for g in batch for _ in range(width)]
    return queries, dataset.doc_texts([d for g in batch for d in groups.docs[g]])


class GroupCollator:
    """A batch of group numbers -> its pair texts, labels (``[B, G]``, 1 for the positive) and document kinds."""

    def __init__(self, dataset: BeirDataset, groups: RerankGroups) -> None:
        self.dataset, self.groups = dataset, groups

    def __call__(self, items: list[dict]) -> dict:
        batch = [item["row"] for item in items]
        queries, documents = group_texts(self.dataset, self.groups, batch)
        return {"queries": queries, "documents": documents, "targets": torch.from_numpy(self.groups.labels[batch]),
                "kinds": torch.from_numpy(self.groups.kinds[batch])}


class RerankStep:
    """``compute_loss``: score the batch's pairs and apply the objective; ``metrics`` keeps the step's mean
    gradient weight of positives, hard and easy negatives (and CET's weight of the hard ones) for the log."""

    def __init__(self, config: RerankerConfig) -> None:
        self.config, self.metrics = config, {}

    def __call__(self, model, inputs: dict) -> Tensor:
        kinds = inputs["kinds"]
        shape = kinds.shape
        other, hard = inputs.get("other"), inputs.get("hard")
        out = model(inputs["queries"], inputs["documents"])
        loss, weights = objective(self.config.objective).step(
            self.config, out.scores.view(shape), out.log_p_yes.view(shape), out.log_p_no.view(shape),
            inputs["targets"], other, hard)
        self.metrics = weight_summary(weights, kinds.cpu().numpy())
        if other is not None:
            cet = weights_on_hard(other[:, 1:], self.config.debias_ratio, hard)
            self.metrics["cet_weight_hard"] = float(cet[hard].mean())
        return loss


class SelectionModel:
    """CET's selection model S (arXiv 2510.14824; the official train.py): before each reranker step, S takes a
    pairwise step against the reranker's scores, with its own AdamW and warm-up/decay schedule; the scores
    of both models that weight the losses are taken in eval mode without gradient."""

    def __init__(self, scorer, config: RerankerConfig, total_steps: int) -> None:
        self.scorer, self.ratio = scorer, config.debias_ratio
        self.optimizer = torch.optim.AdamW(parameter_groups(scorer, config.learning_rate, config.head_learning_rate))
        warmup = max(1, int(config.warmup_ratio * total_steps))
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, partial(warmup_then_linear_decay, total_steps, warmup))

    def step(self, reranker, inputs: dict, autocast) -> dict:
        """S's step; returns what the reranker's loss reads: S's eval-mode scores and the hard-negative mask."""
        queries, documents, shape = inputs["queries"], inputs["documents"], inputs["kinds"].shape
        hard = (inputs["kinds"][:, 1:] == HARD).to(self.scorer.device)
        with autocast():
            other = eval_scores(self.scorer, queries, documents).view(shape)
            reranker_scores = eval_scores(reranker, queries, documents).view(shape)
            scores = self.scorer(queries, documents).scores.view(shape)
        CETPairLoss(self.ratio)(scores, reranker_scores, hard=hard).backward()
        average_gradients(self.scorer)
        torch.nn.utils.clip_grad_norm_(self.scorer.parameters(), 1.0)
        self.optimizer.step()
        self.schedule.step()
        self.optimizer.zero_grad()
        return {"other": other, "hard": hard}

    def save(self, checkpoint: Path) -> None:
        """S and its optimiser and schedule state, into a Trainer checkpoint folder."""
        self.scorer.save(Path(checkpoint) / SELECTION)
        torch.save({"optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict()},
                   Path(checkpoint) / SELECTION_STATE)

    def load_state(self, checkpoint: Path) -> None:
        """The optimiser and schedule state :meth:`save` kept (S itself is loaded from ``selection/``)."""
        saved = torch.load(Path(checkpoint) / SELECTION_STATE, weights_only=False)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.schedule.load_state_dict(saved["schedule"])


def average_gradients(module: torch.nn.Module) -> None:
    """Under torchrun, S's gradients averaged over the processes (what DDP does for the reranker): every copy of
    S starts from the same seeded weights and takes the same step, so the copies stay equal."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])  # one all-reduce, not one per tensor
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()
