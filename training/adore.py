"""ADORE (Zhan et al., SIGIR 2021): train the query encoder against dynamic hard negatives retrieved from a
fixed document index, with a LambdaLoss-style pairwise loss weighted by the change in MRR.

The document encoder never changes, so the deployed index is reused as it is: only queries are re-encoded.
"""

from __future__ import annotations

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
from retriever.encoders import TextEncoder, load_sentence_transformer
from retriever.encoders.bi_encoder import TOWERS_FILE
from retriever.errors import RetrieverError
from retriever.index import save_index
from retriever.index.store import resolve_index_dir
from retriever.pipeline import open_index
from training.callbacks import plot_training_curve, report_outputs
from training.config import TrainConfig
from training.dev_eval import DenseDev, EarlyStopping, steps_per_epoch
from training.loop import embed_texts, epoch_batches, fresh_log, total_steps
from training.run_log import append_log

logger = logging.getLogger(__name__)
DEV_METRIC = "eval_dev_cosine_ndcg@10"


def delta_mrr_weights(ranks: Tensor, relevant: Tensor, valid: Tensor, cutoff: int) -> Tensor:
    """``w[b, i, j] = |1/rank_i - 1/rank_j|`` for relevant ``i`` and non-relevant ``j`` of query ``b``;
    a rank past ``cutoff`` counts as 1/rank = 0 (LambdaLoss's ΔMRR@k). Zero for every other pair."""
    reciprocal = 1.0 / ranks.clamp(min=1).to(torch.float64)
    inverse = torch.where(ranks <= cutoff, reciprocal, torch.zeros((), dtype=torch.float64))
    delta = (inverse[:, :, None] - inverse[:, None, :]).abs()
    return (delta * pair_mask(relevant, valid)).to(torch.float32)


def pair_mask(relevant: Tensor, valid: Tensor) -> Tensor:
    """``[b, i, j]``: ``i`` relevant and ``j`` non-relevant, both real candidates of query ``b``."""
    return (relevant & valid)[:, :, None] & (~relevant & valid)[:, None, :]


def adore_loss(scores: Tensor, weights: Tensor, pairs: Tensor, temperature: float, normalize: str = "pairs") -> Tensor:
    """ADORE's ΔMRR-weighted pairwise loss, ``ℓ_bij = w_bij * softplus((s_bj - s_bi) / tau)``.

    ``pairs`` (the official ``adore/train.py``): each query's sum over its (relevant, non-relevant) pairs
    divided by its number of such pairs (weighted or not), then the mean over the batch; ``sum``: the sum
    over all pairs divided by the batch size; ``weights``: each query's weights scaled to sum to 1."""
    margins = (scores[:, None, :] - scores[:, :, None]) / temperature  # [b, i, j] = s_j - s_i
    per_pair = nn.functional.softplus(margins)
    if normalize == "weights":
        weights = weights / weights.sum(dim=(1, 2), keepdim=True).clamp(min=torch.finfo(weights.dtype).tiny)
    per_query = (weights * per_pair).sum(dim=(1, 2))
    if normalize == "pairs":
        per_query = per_query / pairs.sum(dim=(1, 2)).clamp(min=1).to(per_query.dtype)
    return per_query.mean()


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
    """Search the real index with the current query vectors; when it returned none of a query's positives,
    append them all (unranked), as the official code does; otherwise candidates are the top ``k`` only."""
    result = index.search(query_vectors, k)
    width = k + max(len(p) for p in positives)  # room for appended positives
    rows = np.zeros((len(positives), width), dtype=np.int64)
    ranks = np.full((len(positives), width), k + 1, dtype=np.int64)
    relevant = np.zeros((len(positives), width), dtype=bool)
    valid = np.zeros((len(positives), width), dtype=bool)
    for b, (ids, pos) in enumerate(zip(result.ids, positives, strict=True)):
        missing = [] if pos & set(ids) else sorted(pos)
        cand = list(ids) + missing
        rows[b, : len(cand)] = [doc_row[d] for d in cand]
        ranks[b, : len(ids)] = np.arange(1, len(ids) + 1)
        relevant[b, : len(cand)] = [d in pos for d in cand]
        valid[b, : len(cand)] = True
    return AdoreBatch(torch.from_numpy(rows), torch.from_numpy(ranks), torch.from_numpy(relevant),
                      torch.from_numpy(valid), result.ids)


def dense_candidates(query_vectors: Tensor, doc_matrix: Tensor, positive_rows: list[list[int]],
                     k: int) -> AdoreBatch:
    """``dynamic_candidates`` by exact search of an in-memory document matrix (rows = documents): the
    top ``k`` by inner product, plus every positive of a query that retrieved none of them (unranked)."""
    top = (query_vectors.float() @ doc_matrix.float().T).topk(min(k, len(doc_matrix)), dim=1).indices
    n, width = top.shape[1], top.shape[1] + max(len(p) for p in positive_rows)
    rows = torch.zeros((len(positive_rows), width), dtype=torch.int64)
    ranks = torch.full((len(positive_rows), width), k + 1, dtype=torch.int64)
    relevant = torch.zeros((len(positive_rows), width), dtype=torch.bool)
    valid = torch.zeros((len(positive_rows), width), dtype=torch.bool)
    for b, (retrieved, pos) in enumerate(zip(top.tolist(), positive_rows, strict=True)):
        missing = [] if set(pos) & set(retrieved) else sorted(pos)
        cand = retrieved + missing
        rows[b, : len(cand)] = torch.tensor(cand)
        ranks[b, :n] = torch.arange(1, n + 1)
        relevant[b, : len(cand)] = torch.tensor([c in pos for c in cand])
        valid[b, : len(cand)] = True
    return AdoreBatch(rows, ranks, relevant, valid, [])


def dense_adore_loss(query_vectors: Tensor, doc_matrix: Tensor, positive_rows: list[list[int]], k: int,
                     temperature: float, normalize: str = "pairs") -> Tensor:
    """ADORE's loss for query vectors against a frozen document matrix (negatives re-retrieved from it
    with the current, detached query vectors at every call)."""
    cands = dense_candidates(query_vectors.detach(), doc_matrix, positive_rows, k)
    scores = torch.einsum("bd,bmd->bm", query_vectors.float(), doc_matrix[cands.rows].float())
    weights = delta_mrr_weights(cands.ranks, cands.relevant, cands.valid, k)
    return adore_loss(scores, weights, pair_mask(cands.relevant, cands.valid), temperature, normalize)


def _adore_step(config: TrainConfig, query_model, index, doc_matrix: Tensor, dataset, batch: list[str],
                positives: dict[str, set[str]], doc_row: dict[str, int]) -> Tensor:
    q = embed_texts(query_model, [dataset.queries[x] for x in batch])
    cands = dynamic_candidates(index, q.detach().cpu().numpy(), [positives[x] for x in batch], doc_row,
                               config.adore_top_k)
    scores = torch.einsum("bd,bmd->bm", q.float(), doc_matrix[cands.rows].to(q.device).float())
    weights = delta_mrr_weights(cands.ranks, cands.relevant, cands.valid, config.adore_top_k).to(q.device)
    pairs = pair_mask(cands.relevant, cands.valid).to(q.device)
    return adore_loss(scores, weights, pairs, config.tau, config.adore_normalize)


def train_adore(config: TrainConfig, time_budget_s: float | None = None) -> dict:
    """``time_budget_s``: stop at the first dev evaluation past this many training seconds (best kept)."""
    if not config.index:
        raise RetrieverError("--method adore needs --index: the index of the frozen document encoder")
    torch.manual_seed(config.seed)
    dataset = load_dataset(config.data)
    index, manifest, encoder = open_index(config.index, use_gpu=True)
    doc_encoder = encoder.document
    query_init = config.model if config.model != "default" else manifest.model_id
    query_model = load_sentence_transformer(query_init).float()
    query_model.max_seq_length = config.query_max_seq_length or 64

    doc_ids = dataset.doc_ids
    doc_matrix = torch.from_numpy(doc_encoder.encode(dataset.doc_texts(doc_ids), side="document"))  # cached
    doc_row = {d: i for i, d in enumerate(doc_ids)}
    qrels = dataset.qrels(config.split)
    qids = [q for q, docs in qrels.items() if any(r > 0 for r in docs.values())]
    if config.max_pairs:
        qids = list(np.random.default_rng(config.seed).permutation(qids)[: config.max_pairs])
    positives = {q: {d for d, r in qrels[q].items() if r > 0 and d in doc_row} for q in qids}
    qids = [q for q in qids if positives[q]]
    dev = DenseDev(dataset, config.dev_split, doc_ids, doc_matrix) if config.dev_split in dataset.splits else None

    total = total_steps(len(qids), config)
    optimizer = torch.optim.AdamW(query_model.parameters(), lr=config.learning_rate, weight_decay=0.01)
    warmup = max(1, int(config.warmup_ratio * total))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup))))
    output = Path(config.output)
    log_path = fresh_log(output)
    best_dir = output / "best-query"
    early = EarlyStopping(config.early_stopping_patience, config.min_epochs + 1)  # + the evaluation at step 0
    per_epoch = steps_per_epoch(len(qids), config.batch_size)
    if dev is not None:  # step 0: the start model (zero-shot when it is the document model)
        value = dev(query_model)
        logger.info("step 0: dev nDCG@10 %.4f", value)
        append_log(log_path, {"step": 0, DEV_METRIC: value})
        if early.update(value):
            query_model.save(str(best_dir))
    query_model.train()  # dropout on, as in the official loop
    start = time.perf_counter()
    step = best_step = 0
    batches = epoch_batches(qids, config.batch_size, total, config.seed)
    for step, batch in enumerate(tqdm(batches, total=total, desc="ADORE"), start=1):
        loss = _adore_step(config, query_model, index, doc_matrix, dataset, batch, positives, doc_row)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(query_model.parameters(), 1.0)  # the official max_grad_norm
        optimizer.step()
        schedule.step()
        entry = {"step": step, "loss": float(loss.detach()), "learning_rate": schedule.get_last_lr()[0]}
        if dev is not None and (step % per_epoch == 0 or step == total):
            entry[DEV_METRIC] = dev(query_model)
            logger.info("step %d (epoch %.2f): dev nDCG@10 %.4f", step, step / per_epoch, entry[DEV_METRIC])
            if early.update(entry[DEV_METRIC]):
                query_model.save(str(best_dir))
                best_step = step
        append_log(log_path, entry)
        if early.should_stop:
            logger.info("early stopping at step %d (best: evaluation %d)", step, early.best_eval)
            break
        if time_budget_s and DEV_METRIC in entry and time.perf_counter() - start > time_budget_s:
            logger.warning("time budget of %.0f s spent at step %d: stopping (best kept)", time_budget_s, step)
            break
    seconds = time.perf_counter() - start
    if (best_dir / "config.json").is_file():
        query_model = load_sentence_transformer(str(best_dir)).float()
    query_model.eval()
    _save_towers(config, query_model, manifest, doc_encoder, index, output)
    plot_training_curve(log_path, output / "training_curve.png", DEV_METRIC)
    summary = {"train_seconds": seconds, "samples_per_s": step * config.batch_size / seconds, "steps": step,
               "epochs_run": round(step / per_epoch, 2), "rows": len(qids), "loss": "adore", "tau": config.tau,
               "learning_rate": config.learning_rate, "adore_normalize": config.adore_normalize,
               "stopped_early": early.should_stop, "time_budget_s": time_budget_s,
               "best_dev_ndcg@10": early.best_value, "best_step": None if dev is None else best_step,
               "document_model": manifest.model_id}
    atomic_write_json(output / "train_summary.json", summary)
    report_outputs(output)
    return summary


def _save_towers(config: TrainConfig, query_model, manifest, doc_encoder, index, output: Path) -> None:
    """The query tower in ``output/query``, towers.json naming the frozen document model, and (with
    ``update_index``) a new index version whose manifest names the query tower: no corpus re-encoding."""
    query_dir = output / "query"
    query_model.save(str(query_dir))
    atomic_write_json(output / TOWERS_FILE, {"query": "query", "document": manifest.model_id,
                                             "document_fingerprint": manifest.model_fingerprint})
    if config.update_index:
        query_tower = TextEncoder(query_model, str(query_dir.resolve()), doc_encoder.cache)
        folder = resolve_index_dir(config.index)
        updated = manifest.model_copy(update={"query_model_id": str(query_dir.resolve()),
                                              "query_model_fingerprint": query_tower.fingerprint})
        save_index(index, updated, folder)
