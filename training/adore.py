"""ADORE (Zhan et al., SIGIR 2021): train the query encoder against dynamic hard negatives retrieved from a
fixed document index, with a LambdaLoss-style pairwise loss weighted by the change in MRR.

The document encoder never changes, so the deployed index is reused as it is: only queries are re-encoded.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from retriever.atomic import atomic_write_json
from retriever.data import load_dataset
from retriever.encoders import BiEncoder, TextEncoder, load_sentence_transformer
from retriever.encoders.bi_encoder import TOWERS_FILE
from retriever.errors import RetrieverError
from retriever.evaluate import evaluate_run
from retriever.index import save_index
from retriever.index.store import resolve_index_dir
from retriever.pipeline import open_index, retrieve
from training.callbacks import plot_training_curve
from training.config import TrainConfig
from training.loop import embed_texts, epoch_batches, fresh_log, total_steps

logger = logging.getLogger(__name__)


def delta_mrr_weights(ranks: Tensor, relevant: Tensor, valid: Tensor, cutoff: int) -> Tensor:
    """``w[b, i, j] = |1/rank_i - 1/rank_j|`` for relevant ``i`` and non-relevant ``j`` of query ``b``;
    a rank past ``cutoff`` counts as 1/rank = 0 (LambdaLoss's ΔMRR@k). Zero for every other pair."""
    reciprocal = 1.0 / ranks.clamp(min=1).to(torch.float64)
    inverse = torch.where(ranks <= cutoff, reciprocal, torch.zeros((), dtype=torch.float64))
    delta = (inverse[:, :, None] - inverse[:, None, :]).abs()
    pairs = (relevant & valid)[:, :, None] & (~relevant & valid)[:, None, :]
    return (delta * pairs).to(torch.float32)


def normalize_per_query(weights: Tensor) -> Tensor:
    """Scale each query's ``[i, j]`` weight matrix to sum to 1 (queries without a weighted pair stay 0)."""
    totals = weights.sum(dim=(1, 2), keepdim=True)
    return weights / totals.clamp(min=torch.finfo(weights.dtype).tiny)


def adore_loss(scores: Tensor, weights: Tensor, temperature: float) -> Tensor:
    """``sum_{b,i,j} w_bij * log(1 + exp((s_bj - s_bi) / tau)) / B``."""
    margins = (scores[:, None, :] - scores[:, :, None]) / temperature  # [b, i, j] = s_j - s_i
    return (weights * nn.functional.softplus(margins)).sum() / scores.size(0)


@dataclass
class AdoreBatch:
    """Candidates of one step: retrieved top-k plus unretrieved positives, as rows of the document matrix."""

    rows: Tensor
    ranks: Tensor
    relevant: Tensor
    valid: Tensor
    retrieved_ids: list[list[str]]


def dynamic_candidates(index, query_vectors: np.ndarray, positives: list[set[str]], doc_row: dict[str, int],
                       k: int) -> AdoreBatch:
    """Search the real index with the current query vectors; append positives it did not return."""
    result = index.search(query_vectors, k)
    width = k + max(len(p) for p in positives)
    rows = np.zeros((len(positives), width), dtype=np.int64)
    ranks = np.full((len(positives), width), k + 1, dtype=np.int64)
    relevant = np.zeros((len(positives), width), dtype=bool)
    valid = np.zeros((len(positives), width), dtype=bool)
    for b, (ids, pos) in enumerate(zip(result.ids, positives, strict=True)):
        missing = sorted(pos - set(ids))
        cand = list(ids) + missing
        rows[b, : len(cand)] = [doc_row[d] for d in cand]
        ranks[b, : len(ids)] = np.arange(1, len(ids) + 1)
        relevant[b, : len(cand)] = [d in pos for d in cand]
        valid[b, : len(cand)] = True
    return AdoreBatch(torch.from_numpy(rows), torch.from_numpy(ranks), torch.from_numpy(relevant),
                      torch.from_numpy(valid), result.ids)


def train_adore(config: TrainConfig) -> dict:
    if not config.index:
        raise RetrieverError("--method adore needs --index: the index of the frozen document encoder")
    torch.manual_seed(config.seed)
    dataset = load_dataset(config.data)
    index, manifest, encoder = open_index(config.index, use_gpu=True)
    doc_encoder = encoder.document
    query_init = config.model if config.model != "default" else manifest.model_id
    query_model = load_sentence_transformer(query_init).float()
    query_model.max_seq_length = config.query_max_seq_length or 64
    query_model.train()

    doc_ids = dataset.doc_ids
    doc_matrix = torch.from_numpy(doc_encoder.encode(dataset.doc_texts(doc_ids), side="document"))  # cached
    doc_row = {d: i for i, d in enumerate(doc_ids)}
    qrels = dataset.qrels(config.split)
    qids = [q for q, docs in qrels.items() if any(r > 0 for r in docs.values())]
    if config.max_pairs:
        qids = list(np.random.default_rng(config.seed).permutation(qids)[: config.max_pairs])
    positives = {q: {d for d, r in qrels[q].items() if r > 0 and d in doc_row} for q in qids}

    total = total_steps(len(qids), config)
    optimizer = torch.optim.AdamW(query_model.parameters(), lr=config.learning_rate)
    warmup = max(1, int(config.warmup_ratio * total))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup))))
    output = Path(config.output)
    log_path = fresh_log(output)
    retrieval_seconds = 0.0
    start = time.perf_counter()
    batches = epoch_batches(qids, config.batch_size, total, config.seed)
    for step, batch in enumerate(tqdm(batches, total=total, desc="ADORE")):
        q = embed_texts(query_model, [dataset.queries[x] for x in batch])
        tick = time.perf_counter()
        cands = dynamic_candidates(index, q.detach().cpu().numpy(), [positives[x] for x in batch], doc_row,
                                   config.adore_top_k)
        retrieval_seconds += time.perf_counter() - tick
        scores = torch.einsum("bd,bmd->bm", q.float(), doc_matrix[cands.rows].to(q.device).float())
        weights = delta_mrr_weights(cands.ranks, cands.relevant, cands.valid, config.adore_top_k).to(q.device)
        if config.adore_normalize == "query":
            weights = normalize_per_query(weights)
        loss = adore_loss(scores, weights, config.tau)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        with open(log_path, "a") as handle:
            handle.write(json.dumps({"step": step + 1, "loss": float(loss.detach()),
                                     "learning_rate": schedule.get_last_lr()[0]}) + "\n")
    seconds = time.perf_counter() - start

    query_model.eval()
    query_dir = output / "query"
    query_model.save(str(query_dir))
    atomic_write_json(output / TOWERS_FILE, {"query": "query", "document": manifest.model_id,
                                             "document_fingerprint": manifest.model_fingerprint})
    query_tower = TextEncoder(query_model, str(query_dir.resolve()), doc_encoder.cache)
    towers = BiEncoder(query_tower, doc_encoder)
    dev = {}
    if config.dev_split in dataset.splits:
        run = retrieve(index, towers, dataset.split_queries(config.dev_split), k=100)
        dev = evaluate_run(dataset.qrels(config.dev_split), run)
        with open(log_path, "a") as handle:
            handle.write(json.dumps({"step": total, "eval_dev_cosine_ndcg@10": dev["ndcg@10"]}) + "\n")
    plot_training_curve(log_path, output / "training_curve.png", "eval_dev_cosine_ndcg@10")
    if config.update_index:
        folder = resolve_index_dir(config.index)
        updated = manifest.model_copy(update={"query_model_id": str(query_dir.resolve()),
                                              "query_model_fingerprint": query_tower.fingerprint})
        save_index(index, updated, folder)  # same vectors, new manifest: no corpus re-encoding
    summary = {"train_seconds": seconds, "samples_per_s": total * config.batch_size / seconds, "steps": total,
               "retrieval_seconds_per_step": retrieval_seconds / max(total, 1), "rows": len(qids),
               "loss": "adore", "tau": config.tau, "best_dev_ndcg@10": dev.get("ndcg@10"),
               "document_model": manifest.model_id}
    atomic_write_json(output / "train_summary.json", summary)
    return summary
