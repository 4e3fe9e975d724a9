"""ADORE (Zhan et al., SIGIR 2021): train the query encoder against dynamic hard negatives retrieved from a
fixed document index, with a LambdaLoss-style pairwise loss weighted by the change in MRR.

The document encoder never changes, so the deployed index is reused as it is: only queries are re-encoded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from retriever.atomic import atomic_write_json
from retriever.data import load_dataset
from retriever.encoders import TextEncoder, load_sentence_transformer
from retriever.encoders.bi_encoder import TOWERS_FILE
from retriever.errors import RetrieverError
from retriever.index import save_index
from retriever.index.store import resolve_index_dir
from retriever.pipeline import open_index
from training.callbacks import BestModelEarlyStopping, plot_training_curve, report_outputs
from training.config import AdoreConfig
from training.dev_eval import DenseDev
from training.loop import embed_features
from training.query_trainer import (
    CHECKPOINTS,
    EpochOrderSampler,
    EpochSync,
    QueryTrainer,
    TimeBudget,
    chained_permutations,
    freeze_unused_pooler,
    prepare_output,
    run_trainer,
    steps_per_epoch,
    training_arguments,
    world_size,
)
from training.run_log import LOG_FILE

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


class QueryCollator:
    """Tokenizes a batch of training query ids for the query tower (the ids travel along for the loss)."""

    def __init__(self, tokenize, queries: dict[str, str]) -> None:
        self.tokenize, self.queries = tokenize, queries

    def __call__(self, items: list[dict]) -> dict:
        qids = [item["qid"] for item in items]
        return {"features": self.tokenize([self.queries[q] for q in qids]), "qids": qids}


class AdoreStep:
    """``compute_loss`` of ADORE: encode the batch's queries, retrieve their candidates from the real, frozen
    index with the detached vectors, and take the ΔMRR-weighted pairwise loss on the cached document rows."""

    def __init__(self, config: AdoreConfig, index, doc_matrix: Tensor, positives: dict[str, set[str]],
                 doc_row: dict[str, int]) -> None:
        self.index, self.doc_matrix, self.positives, self.doc_row = index, doc_matrix, positives, doc_row
        self.k, self.tau, self.normalize = config.adore_top_k, config.tau, config.adore_normalize

    def __call__(self, model, inputs: dict) -> Tensor:
        q = embed_features(model, inputs["features"])
        cands = dynamic_candidates(self.index, q.detach().cpu().numpy(), [self.positives[x] for x in inputs["qids"]],
                                   self.doc_row, self.k)
        scores = torch.einsum("bd,bmd->bm", q.float(), self.doc_matrix[cands.rows].to(q.device).float())
        weights = delta_mrr_weights(cands.ranks, cands.relevant, cands.valid, self.k).to(q.device)
        return adore_loss(scores, weights, pair_mask(cands.relevant, cands.valid).to(q.device), self.tau,
                          self.normalize)


def _training_queries(config: AdoreConfig, dataset, doc_row: dict[str, int]) -> dict[str, set[str]]:
    """Training query id -> its positives in the corpus (``max_pairs``: a seeded subsample of the queries)."""
    qrels = dataset.qrels(config.split)
    qids = [q for q, docs in qrels.items() if any(r > 0 for r in docs.values())]
    if config.max_pairs:
        qids = list(np.random.default_rng(config.seed).permutation(qids)[: config.max_pairs])
    positives = {q: {d for d, r in qrels[q].items() if r > 0 and d in doc_row} for q in qids}
    return {q: docs for q, docs in positives.items() if docs}


def train_adore(config: AdoreConfig, time_budget_s: float | None = None) -> dict:
    """Train the query tower on transformers' Trainer (see :mod:`training.query_trainer`); ``time_budget_s``:
    stop at the first dev evaluation past this many training seconds (best kept)."""
    if not config.index:
        raise RetrieverError("--method adore needs --index: the index of the frozen document encoder")
    output, resume_from = prepare_output(config)
    dataset = load_dataset(config.data)
    index, manifest, encoder = open_index(config.index, use_gpu=True)
    query_model = load_sentence_transformer(config.model if config.model != "default" else manifest.model_id).float()
    query_model.max_seq_length = config.query_max_seq_length or 64
    freeze_unused_pooler(query_model)
    doc_ids = dataset.doc_ids
    doc_matrix = torch.from_numpy(encoder.document.encode(dataset.doc_texts(doc_ids), side="document"))  # cached
    doc_row = {d: i for i, d in enumerate(doc_ids)}
    positives = _training_queries(config, dataset, doc_row)
    dev = DenseDev(dataset, config.dev_split, doc_ids, doc_matrix) if config.dev_split in dataset.splits else None
    per_epoch = steps_per_epoch(len(positives), config.batch_size)
    total = config.max_steps if config.max_steps > 0 else int(per_epoch * config.epochs)
    sampler = EpochOrderSampler(len(positives), chained_permutations(len(positives), config.seed))
    rows = [{"qid": q} for q in positives]
    early = BestModelEarlyStopping(DEV_METRIC, output / CHECKPOINTS / "best", config.early_stopping_patience,
                                   min_step=config.min_epochs * per_epoch)
    trainer = QueryTrainer(
        model=query_model, train_dataset=rows, eval_dataset=rows,  # Trainer schedules evaluations only with one
        args=training_arguments(config, output, per_epoch, total, resume_from is not None, max_grad_norm=1.0),
        data_collator=QueryCollator(query_model.preprocess, dataset.queries), callbacks=[EpochSync(per_epoch, sampler)],
        step_loss=AdoreStep(config, index, doc_matrix, positives, doc_row), dev=dev, dev_metric=DEV_METRIC,
        sampler=sampler, schedule="warmup-linear", warmup_ratio=config.warmup_ratio)
    steps, seconds = run_trainer(trainer, early, TimeBudget(time_budget_s), output, resume_from)
    if not trainer.is_world_process_zero():
        return {}
    if (early.best_dir / "config.json").is_file():
        query_model = load_sentence_transformer(str(early.best_dir)).float()
    query_model.eval()
    _save_towers(config, query_model, manifest, encoder.document, index, output)
    plot_training_curve(output / LOG_FILE, output / "training_curve.png", DEV_METRIC)
    summary = {"train_seconds": seconds, "samples_per_s": steps * config.batch_size * world_size() / seconds,
               "steps": steps, "epochs_run": round(steps / per_epoch, 2), "rows": len(positives), "loss": "adore",
               "tau": config.tau, "learning_rate": config.learning_rate, "adore_normalize": config.adore_normalize,
               "stopped_early": early.stopped, "time_budget_s": time_budget_s, "best_dev_ndcg@10": early.best_value,
               "best_step": None if dev is None else early.best_step, "document_model": manifest.model_id}
    atomic_write_json(output / "train_summary.json", summary)
    report_outputs(output)
    return summary


def _save_towers(config: AdoreConfig, query_model, manifest, doc_encoder, index, output: Path) -> None:
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
