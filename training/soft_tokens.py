"""SoftREPA-style soft-token contrastive tuning (``retriever train --method soft-tokens``).

The pretrained encoder is frozen (and in eval mode); only the soft tokens and their zero-initialised gates
(``SoftTokenTransformer.prompts`` / ``.gates``) learn, with InfoNCE over every in-batch pair (plus mined
hard negatives), or the MW loss. The temperature is fixed (0.07 unless ``--temperature``): SoftREPA's
``ContrastiveLoss`` holds ``temp = 0.07`` and ``scale = 4`` as parameters but never gives them to the
optimizer. ``--side query`` tunes the query tower only: documents keep the frozen model's vectors, read
from the embedding cache, so a deployed index is adapted without re-encoding.

Training runs whole epochs with a dev evaluation after each (nDCG@10; for ``--side query`` against the
full frozen corpus), keeps the best soft tokens, and stops early after ``early_stopping_patience``
epochs without improvement, never before ``min_epochs``.
"""

from __future__ import annotations

import logging
import resource
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from retriever.atomic import atomic_write_json
from retriever.data import BeirDataset, load_dataset
from retriever.encoders import DEFAULT_MODEL_ID, load_sentence_transformer
from retriever.encoders.bi_encoder import TOWERS_FILE
from retriever.encoders.soft_tokens import add_soft_tokens
from retriever.encoders.text_encoder import resolve_model_path
from training.adore import dense_adore_loss
from training.callbacks import plot_training_curve, report_outputs
from training.config import TrainConfig
from training.dev_eval import DenseDev, EarlyStopping, steps_per_epoch
from training.examples import TrainingRows, epoch_rows
from training.loop import embed_texts, fresh_log
from training.losses import infonce_from_scores, mw_from_scores
from training.run_log import append_log
from training.trainer import load_negatives

logger = logging.getLogger(__name__)
DEV_METRIC = "eval_dev_ndcg@10"
SOFTREPA_TEMPERATURE = 0.07


def trainable_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _frozen_vectors(base, config: TrainConfig, dataset: BeirDataset, doc_ids: list[str]) -> torch.Tensor:
    from retriever.encoders import EmbeddingCache, TextEncoder

    encoder = TextEncoder(base, resolve_model_path(config.model)[1], EmbeddingCache(), show_progress=True)
    return torch.from_numpy(encoder.encode(dataset.doc_texts(doc_ids), "document"))


def _dev(config: TrainConfig, dataset: BeirDataset, base, frozen: dict[str, torch.Tensor]):
    """(evaluate(soft) -> nDCG@10) or None. Query side: the full frozen corpus; otherwise the dev positives
    plus ``dev_corpus_size`` other documents, re-encoded by the soft model at each evaluation."""
    if config.dev_split not in dataset.splits:
        return None
    if config.side == "query":
        dev = DenseDev(dataset, config.dev_split, list(frozen), torch.stack(list(frozen.values())))
        return dev
    qrels = dataset.qrels(config.dev_split)
    positives = sorted({d for docs in qrels.values() for d in docs})
    others = sorted(set(dataset.doc_ids) - set(positives))
    rng = np.random.default_rng(config.seed)
    doc_ids = positives + [others[i] for i in rng.choice(len(others), min(config.dev_corpus_size, len(others)),
                                                         replace=False)]

    def evaluate(soft) -> float:
        soft.eval()
        matrix = soft.encode(dataset.doc_texts(doc_ids), convert_to_tensor=True, normalize_embeddings=True,
                             show_progress_bar=True)
        return DenseDev(dataset, config.dev_split, doc_ids, matrix.cpu())(soft)
    return evaluate


def _batch_loss(config: TrainConfig, soft, base, rows: TrainingRows, batch: np.ndarray, dataset: BeirDataset,
                frozen: dict[str, torch.Tensor]) -> torch.Tensor:
    n_columns = 1 + config.n_negatives
    queries = [rows.columns["anchor"][i] for i in batch]
    doc_ids = [rows.ids[i][1][c] for c in range(n_columns) for i in batch]  # positives, then negatives
    with torch.set_grad_enabled(config.side in ("query", "both")):
        q = embed_texts(soft if config.side in ("query", "both") else base, queries)
    d = torch.stack([frozen[x] for x in doc_ids]) if config.side == "query" else \
        embed_texts(soft, dataset.doc_texts(doc_ids))
    cosines = q @ d.T
    labels = torch.as_tensor(batch)
    excluded = rows.known.mask(labels, labels, n_columns)
    positive_column = torch.arange(len(batch))
    excluded[positive_column, positive_column] = True
    if config.loss == "mw":
        return mw_from_scores(cosines[positive_column, positive_column], cosines[~excluded], config.tau)
    return infonce_from_scores(cosines, positive_column, excluded, config.temperature or SOFTREPA_TEMPERATURE)


class DynamicNegatives:
    """ADORE's objective for query-side soft tokens: each query's negatives are re-retrieved from the frozen
    corpus vectors with its current vector at every step, and the ΔMRR-weighted pairwise loss is taken."""

    def __init__(self, config: TrainConfig, dataset: BeirDataset, frozen: dict[str, torch.Tensor]) -> None:
        self.doc_matrix = torch.stack(list(frozen.values()))
        row = {d: i for i, d in enumerate(frozen)}
        self.positives = {q: [row[d] for d, r in docs.items() if r > 0 and d in row]
                          for q, docs in dataset.qrels(config.split).items()}
        self.k, self.tau, self.normalize = config.adore_top_k, config.tau, config.adore_normalize

    def __call__(self, soft, rows: TrainingRows, batch: np.ndarray, dataset: BeirDataset) -> torch.Tensor:
        qids = [rows.ids[i][0] for i in batch]
        q = embed_texts(soft, [dataset.queries[x] for x in qids])
        return dense_adore_loss(q, self.doc_matrix, [self.positives[x] for x in qids], self.k, self.tau,
                                self.normalize)


def _log_dev(log_path: Path, step: int, epoch: int, value: float, early: EarlyStopping) -> bool:
    """Log one dev evaluation; True when it is the best so far."""
    logger.info("epoch %d: dev nDCG@10 %.4f", epoch, value)
    append_log(log_path, {"step": step, "epoch": epoch, DEV_METRIC: value})
    return early.update(value)


def train_soft_tokens(config: TrainConfig, objective: str | None = None, time_budget_s: float | None = None) -> dict:
    """``objective``: ``infonce`` (in-batch, plus mined negatives; or MW with ``loss=mw``) or ``adore``
    (query side only: dynamic negatives from the frozen corpus, ADORE's loss, gradient clipped at 1).
    ``time_budget_s``: stop after the first epoch that ends past this many training seconds (best kept)."""
    objective = objective or config.objective
    if objective == "adore" and config.side != "query":
        raise ValueError("the adore objective needs --side query (documents keep their frozen vectors)")
    torch.manual_seed(config.seed)
    dataset = load_dataset(config.data)
    negatives = load_negatives(config.negatives_file)
    base = load_sentence_transformer(config.model)
    base.max_seq_length = config.max_seq_length
    base.eval()
    soft = add_soft_tokens(load_sentence_transformer(config.model), config.soft_tokens, config.soft_layers)
    soft.max_seq_length = config.max_seq_length
    n_trainable = trainable_parameters(soft)
    logger.info("soft tokens: K=%d, layers=%d, side=%s: %d trainable parameters", config.soft_tokens,
                config.soft_layers, config.side, n_trainable)
    frozen: dict[str, torch.Tensor] = {}
    if config.side == "query":  # documents never move: their vectors come from the cache, no grad
        frozen = dict(zip(dataset.doc_ids, _frozen_vectors(base, config, dataset, dataset.doc_ids), strict=True))
    dev = _dev(config, dataset, base, frozen)
    dynamic = DynamicNegatives(config, dataset, frozen) if objective == "adore" else None

    params = [p for p in soft.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate)
    output = Path(config.output)
    log_path = fresh_log(output)
    n_epochs = int(np.ceil(config.epochs))
    early = EarlyStopping(config.early_stopping_patience, config.min_epochs + 1)  # + epoch 0
    best_state = {k: v.detach().clone() for k, v in soft[0].state_dict().items() if k in ("prompts", "gates")}
    zero_dev = None
    if dev is not None:  # epoch 0: the untrained module is the base model, so this is zero-shot
        zero_dev = dev(soft)
        _log_dev(log_path, 0, 0, zero_dev, early)
    soft.train()
    start, step = time.perf_counter(), 0
    for epoch in range(n_epochs):
        rows = epoch_rows(dataset, config, negatives, epoch)
        order = np.random.default_rng(config.seed + epoch).permutation(len(rows))
        n_batches = steps_per_epoch(len(rows), config.batch_size)
        for b in tqdm(range(n_batches), desc=f"soft tokens ({config.side}) epoch {epoch + 1}/{n_epochs}"):
            if 0 < config.max_steps <= step:
                break
            batch = order[b * config.batch_size:(b + 1) * config.batch_size]
            loss = dynamic(soft, rows, batch, dataset) if dynamic else \
                _batch_loss(config, soft, base, rows, batch, dataset, frozen)
            optimizer.zero_grad()
            loss.backward()
            if dynamic:
                torch.nn.utils.clip_grad_norm_(params, 1.0)  # ADORE's max_grad_norm
            optimizer.step()
            step += 1
            gate = float(torch.tanh(soft[0].gates.detach()).abs().mean())
            append_log(log_path, {"step": step, "epoch": epoch + 1, "loss": float(loss.detach()),
                                  "mean_abs_gate": gate})
        if dev is not None:
            if _log_dev(log_path, step, epoch + 1, dev(soft), early):
                best_state = {k: v.detach().clone() for k, v in soft[0].state_dict().items()
                              if k in ("prompts", "gates")}
            soft.train()
            if early.should_stop:
                logger.info("early stopping after epoch %d (best: epoch %d)", epoch + 1, early.best_eval - 1)
                break
        if time_budget_s and time.perf_counter() - start > time_budget_s:
            logger.warning("time budget of %.0f s spent after epoch %d: stopping (best kept)", time_budget_s, epoch + 1)
            break
        if 0 < config.max_steps <= step:
            break
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if dev is not None:
        soft[0].load_state_dict(best_state, strict=False)
    soft.eval()
    _save(soft, config, output)
    plot_training_curve(log_path, output / "training_curve.png", DEV_METRIC)
    summary = {"train_seconds": seconds, "samples_per_s": step * config.batch_size / seconds, "steps": step,
               "epochs_run": epoch + 1, "best_epoch": early.best_eval - 1 if dev is not None else None,
               "best_dev_ndcg@10": early.best_value, "zero_shot_dev_ndcg@10": zero_dev,
               "trainable_params": n_trainable, "time_budget_s": time_budget_s, "peak_rss_mb": peak_mb,
               "rows": len(rows), "side": config.side,
               "soft_tokens": config.soft_tokens, "soft_layers": config.soft_layers,
               "loss": "adore" if dynamic else config.loss,
               "tau": config.tau if dynamic else config.temperature or SOFTREPA_TEMPERATURE}
    atomic_write_json(output / "train_summary.json", summary)
    report_outputs(output)
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
