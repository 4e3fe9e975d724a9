"""Fit a Cosine Adapter with binary cross-entropy on labelled (query, document) cosines."""

from __future__ import annotations

import copy
import logging

import numpy as np
import torch
from tqdm.auto import tqdm

from retriever.filtering.adapter import CosineAdapter
from retriever.filtering.candidates import Candidates

logger = logging.getLogger(__name__)
UNRETRIEVED_WEIGHT = 0.0  # positives outside the top-K: left out of the fit (dev PR-AUC, docs/findings.md)


class _Pairs:
    """Tensors of one candidate set: top-K cosines with labels, plus unretrieved positives."""

    def __init__(self, c: Candidates, extra_weight: float = 1.0) -> None:
        self.queries = torch.from_numpy(c.query_vectors).float()
        self.cosines = torch.from_numpy(c.cosines).float()
        self.labels = torch.from_numpy(c.labels).float()
        self.valid = torch.from_numpy(c.valid)
        self.extra_q = torch.from_numpy(c.extra_query_index)
        self.extra_cos = torch.from_numpy(c.extra_cosines).float()[:, None]
        self.extra_weight = extra_weight if len(self.extra_q) else 0.0
        self.n_pairs = int(self.valid.sum()) + self.extra_weight * len(self.extra_q)

    def positive_rate(self) -> float:
        return (float(self.labels[self.valid].sum()) + self.extra_weight * len(self.extra_q)) / self.n_pairs

    def bce(self, adapter: CosineAdapter) -> torch.Tensor:
        """Mean BCE over every pair (positives are the qrels, negatives the retrieved non-positives)."""
        loss_fn = torch.nn.functional.binary_cross_entropy_with_logits
        logits = adapter.logits(self.queries, self.cosines)
        loss = loss_fn(logits[self.valid], self.labels[self.valid], reduction="sum")
        if self.extra_weight > 0:
            extra = adapter.logits(self.queries[self.extra_q], self.extra_cos)[:, 0]
            loss = loss + self.extra_weight * loss_fn(extra, torch.ones_like(extra), reduction="sum")
        return loss / self.n_pairs


def fit_adapter(
    train: Candidates,
    dev: Candidates | None = None,
    mapping: str = "power",
    hidden: int = 64,
    epochs: int = 300,
    learning_rate: float = 1e-2,
    weight_decay: float = 1e-2,
    patience: int = 5,
    seed: int = 42,
    show_progress: bool = False,
    unretrieved_weight: float = UNRETRIEVED_WEIGHT,
) -> CosineAdapter:
    """Full-batch AdamW on every training pair. With ``dev``, the dev BCE (the same objective) is checked
    every 10 epochs and the best state is kept (stopping after ``patience`` checks without improvement): the
    query network overfits a few hundred training queries otherwise. ``unretrieved_weight`` weighs the
    positives the first stage did not retrieve (0 leaves them out, 1 counts them like any pair)."""
    torch.manual_seed(seed)
    pairs = _Pairs(train, unretrieved_weight)
    held = _Pairs(dev, unretrieved_weight) if dev is not None else None
    adapter = CosineAdapter(pairs.queries.shape[1], mapping, hidden)
    adapter.start_at_base_rate(pairs.cosines[pairs.valid], pairs.positive_rate())
    optimizer = torch.optim.AdamW(adapter.parameters(), lr=learning_rate, weight_decay=weight_decay)
    best, best_state, bad = np.inf, None, 0
    progress = tqdm(range(epochs), desc=f"fitting {mapping} adapter", disable=not show_progress)
    for epoch in progress:
        adapter.train()
        optimizer.zero_grad()
        loss = pairs.bce(adapter)
        loss.backward()
        optimizer.step()
        if held is not None and (epoch + 1) % 10 == 0:
            adapter.eval()
            with torch.no_grad():
                dev_loss = float(held.bce(adapter))
            progress.set_postfix(train=f"{loss.item():.4f}", dev=f"{dev_loss:.4f}")
            if dev_loss < best - 1e-6:
                best, best_state, bad = dev_loss, copy.deepcopy(adapter.state_dict()), 0
            else:
                bad += 1
                if bad >= patience:
                    break
    if best_state is not None:
        adapter.load_state_dict(best_state)
    adapter.eval()
    logger.info("adapter fitted (%s): train BCE %.4f, best dev BCE %.4f, %d pairs", mapping,
                float(loss.detach()), best, pairs.n_pairs)
    return adapter


def adapter_scores(adapter: CosineAdapter, candidates: Candidates) -> np.ndarray:
    with torch.no_grad():
        return adapter(torch.from_numpy(candidates.query_vectors).float(),
                       torch.from_numpy(candidates.cosines).float()).numpy()
