"""SoftREPA-style soft-token contrastive tuning (``retriever train --method soft-tokens``).

The pretrained encoder is frozen; only the soft tokens (``SoftTokenTransformer.prompts``), a temperature
(init 0.07) and a logit scale (init 1) learn, with InfoNCE over every in-batch pair (plus mined hard
negatives), or the MW loss. ``--side query`` tunes the query tower only: documents keep the frozen
model's vectors, read from the embedding cache, so a deployed index is adapted without re-encoding.
"""

from __future__ import annotations

import json
import logging
import resource
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from retriever.atomic import atomic_write_json
from retriever.data import load_dataset
from retriever.encoders import DEFAULT_MODEL_ID, load_sentence_transformer
from retriever.encoders.bi_encoder import TOWERS_FILE
from retriever.encoders.soft_tokens import add_soft_tokens
from retriever.encoders.text_encoder import resolve_model_path
from training.callbacks import plot_training_curve
from training.config import TrainConfig
from training.examples import build_rows
from training.loop import embed_texts, epoch_batches, fresh_log, total_steps
from training.losses import infonce_from_scores, mw_from_scores
from training.trainer import load_negatives

logger = logging.getLogger(__name__)


class LearnableScale(nn.Module):
    """``logits = scale * cos / temperature``, both learnable (log-parameterised), as in SoftREPA."""

    def __init__(self, temperature: float = 0.07) -> None:
        super().__init__()
        self.log_temperature = nn.Parameter(torch.tensor(float(np.log(temperature))))
        self.log_scale = nn.Parameter(torch.zeros(()))

    def forward(self, cosines: torch.Tensor) -> torch.Tensor:
        return cosines * torch.exp(self.log_scale - self.log_temperature)


def trainable_parameters(model: nn.Module, scale: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad) + sum(p.numel() for p in scale.parameters())


def train_soft_tokens(config: TrainConfig) -> dict:
    torch.manual_seed(config.seed)
    dataset = load_dataset(config.data)
    rows = build_rows(dataset, config.split, load_negatives(config.negatives_file), config.n_negatives,
                      config.max_pairs, config.seed, config.negative_sampling)
    base = load_sentence_transformer(config.model)
    base.max_seq_length = config.max_seq_length
    base.eval()
    soft = add_soft_tokens(load_sentence_transformer(config.model), config.soft_tokens, config.soft_layers)
    soft.max_seq_length = config.max_seq_length
    scale = LearnableScale(config.temperature or 0.07)
    n_trainable = trainable_parameters(soft, scale)
    logger.info("soft tokens: K=%d, layers=%d, side=%s: %d trainable parameters", config.soft_tokens,
                config.soft_layers, config.side, n_trainable)
    if n_trainable >= 1_000_000:
        logger.warning("more than 1M trainable parameters (%d)", n_trainable)
    frozen_docs: dict[str, torch.Tensor] = {}
    if config.side == "query":  # documents never move: their vectors come from the cache, no grad
        from retriever.encoders import TextEncoder

        doc_ids = sorted({d for _, docs in rows.ids for d in docs})
        cached = TextEncoder(base, resolve_model_path(config.model)[1]).encode(dataset.doc_texts(doc_ids), "document")
        frozen_docs = dict(zip(doc_ids, torch.from_numpy(cached), strict=True))

    params = [p for p in soft.parameters() if p.requires_grad] + list(scale.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate)
    total = total_steps(len(rows), config)
    output = Path(config.output)
    log_path = fresh_log(output)
    n_columns = 1 + config.n_negatives
    soft.train()
    start = time.perf_counter()
    batches = epoch_batches(np.arange(len(rows)), config.batch_size, total, config.seed)
    for step, batch in enumerate(tqdm(batches, total=total, desc=f"soft tokens ({config.side})")):
        queries = [rows.columns["anchor"][i] for i in batch]
        doc_ids = [rows.ids[i][1][c] for c in range(n_columns) for i in batch]  # positives, then negatives
        query_model = soft if config.side in ("query", "both") else base
        with torch.set_grad_enabled(config.side in ("query", "both")):
            q = embed_texts(query_model, queries)
        if config.side == "query":
            d = torch.stack([frozen_docs[x] for x in doc_ids])
        else:
            d = embed_texts(soft, dataset.doc_texts(doc_ids))
        cosines = q @ d.T
        labels = torch.tensor(batch)
        excluded = rows.known.mask(labels, labels, n_columns)
        positive_column = torch.arange(len(batch))
        excluded[positive_column, positive_column] = True
        if config.loss == "mw":
            positives = cosines[positive_column, positive_column]
            loss = mw_from_scores(positives, cosines[~excluded], config.tau)
        else:
            temperature = 1.0 / torch.exp(scale.log_scale - scale.log_temperature)
            loss = infonce_from_scores(cosines, positive_column, excluded, temperature)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with open(log_path, "a") as handle:
            handle.write(json.dumps({"step": step + 1, "loss": float(loss.detach()),
                                     "temperature": torch.exp(scale.log_temperature - scale.log_scale).item()})
                         + "\n")
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    soft.eval()
    _save(soft, config, output)
    plot_training_curve(log_path, output / "training_curve.png", "none")
    summary = {"train_seconds": seconds, "samples_per_s": total * config.batch_size / seconds, "steps": total,
               "trainable_params": n_trainable, "peak_rss_mb": peak_mb, "rows": len(rows), "side": config.side,
               "soft_tokens": config.soft_tokens, "soft_layers": config.soft_layers, "loss": config.loss,
               "tau": torch.exp(scale.log_temperature - scale.log_scale).item()}
    atomic_write_json(output / "train_summary.json", summary)
    return summary


def _save(soft, config: TrainConfig, output: Path) -> None:
    """query: towers.json over the untouched document model; doc: the reverse; both: one plain model folder."""
    base_id = resolve_model_path(config.model)[0] if config.model != "default" else DEFAULT_MODEL_ID
    if config.side == "both":
        soft.save(str(output))
        return
    soft.save(str(output / config.side))
    towers = {"query": "query", "document": base_id} if config.side == "query" else \
        {"query": base_id, "document": "doc"}
    atomic_write_json(output / TOWERS_FILE, towers)
