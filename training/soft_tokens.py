"""SoftREPA-style soft-token contrastive tuning (``retriever train --method soft-tokens``).

The pretrained encoder is frozen (and in eval mode); only the soft tokens and their zero-initialised gates
(``SoftTokenTransformer.prompts`` / ``.gates``) learn, with InfoNCE over every in-batch pair (plus mined
hard negatives), or the MW loss. The temperature is fixed (0.07 unless ``--temperature``): SoftREPA's
``ContrastiveLoss`` holds ``temp = 0.07`` and ``scale = 4`` as parameters but never gives them to the
optimizer. ``--side query`` tunes the query tower only: documents keep the frozen model's vectors, read
from the embedding cache, so a deployed index is adapted without re-encoding.

Training runs on transformers' Trainer (:mod:`training.query_trainer`: checkpoints, ``--resume``, DDP),
whole epochs with a dev evaluation after each (nDCG@10; for ``--side query`` against the full frozen
corpus), keeps the best soft tokens, and stops early after ``early_stopping_patience`` epochs without
improvement, never before ``min_epochs``. The lr stays constant (no warm-up), as it always did here.
"""

from __future__ import annotations

import logging
import math
import resource
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from retriever.atomic import atomic_write_json
from retriever.data import BeirDataset, load_dataset
from retriever.encoders import DEFAULT_MODEL_ID, EmbeddingCache, TextEncoder, load_sentence_transformer
from retriever.encoders.bi_encoder import TOWERS_FILE
from retriever.encoders.soft_tokens import PROMPTS_FILE, add_soft_tokens
from retriever.encoders.text_encoder import resolve_model_path
from training.adore import dense_adore_loss
from training.callbacks import BestModelEarlyStopping, plot_training_curve, report_outputs
from training.config import SoftTokensConfig
from training.dev_eval import DenseDev
from training.examples import TrainingRows, epoch_rows
from training.loop import embed_features
from training.losses import infonce_from_scores, mw_from_scores
from training.query_trainer import (
    CHECKPOINTS,
    EpochOrderSampler,
    EpochRows,
    EpochSync,
    QueryTrainer,
    TimeBudget,
    prepare_output,
    reseeded_permutations,
    run_trainer,
    steps_per_epoch,
    training_arguments,
    world_size,
)
from training.run_log import LOG_FILE, read_log
from training.trainer import load_negatives

logger = logging.getLogger(__name__)
DEV_METRIC = "eval_dev_ndcg@10"
SOFTREPA_TEMPERATURE = 0.07


def trainable_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _frozen_vectors(base, config: SoftTokensConfig, dataset: BeirDataset, doc_ids: list[str]) -> torch.Tensor:
    encoder = TextEncoder(base, resolve_model_path(config.model)[1], EmbeddingCache(), show_progress=True)
    return torch.from_numpy(encoder.encode(dataset.doc_texts(doc_ids), "document"))


def _dev(config: SoftTokensConfig, dataset: BeirDataset, base, frozen: dict[str, torch.Tensor]):
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


class SoftTokenCollator:
    """Tokenizes a batch's queries, and its documents (positives, then each negative column) unless their
    vectors are frozen (``--side query``)."""

    def __init__(self, tokenize, epoch_rows: EpochRows, dataset: BeirDataset, config: SoftTokensConfig) -> None:
        self.tokenize, self.epoch_rows, self.dataset = tokenize, epoch_rows, dataset
        self.n_columns, self.side = 1 + config.n_negatives, config.side

    def __call__(self, items: list[dict]) -> dict:
        rows, batch = self.epoch_rows.rows, [item["row"] for item in items]
        out = {"rows": torch.as_tensor(batch), "queries": self.tokenize([rows.columns["anchor"][i] for i in batch])}
        if self.side != "query":
            doc_ids = [rows.ids[i][1][c] for c in range(self.n_columns) for i in batch]
            out["documents"] = self.tokenize(self.dataset.doc_texts(doc_ids))
        return out


class SoftTokenStep:
    """``compute_loss``: InfoNCE (or MW) over the batch's in-batch and mined negatives, known positives masked;
    or, with ``dynamic``, ADORE's loss over negatives re-retrieved from the frozen corpus vectors."""

    def __init__(self, config: SoftTokensConfig, base, epoch_rows: EpochRows, frozen: dict[str, torch.Tensor],
                 dynamic: DynamicNegatives | None) -> None:
        self.config, self.base, self.epoch_rows, self.frozen, self.dynamic = config, base, epoch_rows, frozen, dynamic

    def __call__(self, model, inputs: dict) -> torch.Tensor:
        config, rows, batch = self.config, self.epoch_rows.rows, inputs["rows"].cpu()
        if self.dynamic is not None:
            return self.dynamic(embed_features(model, inputs["queries"]), [rows.ids[i][0] for i in batch.tolist()])
        with torch.set_grad_enabled(config.side in ("query", "both")):
            q = embed_features(model if config.side in ("query", "both") else self.base, inputs["queries"])
        if config.side == "query":
            n_columns = 1 + config.n_negatives
            doc_ids = [rows.ids[i][1][c] for c in range(n_columns) for i in batch.tolist()]
            d = torch.stack([self.frozen[x] for x in doc_ids]).to(q.device)
        else:
            d = embed_features(model, inputs["documents"])
        return _in_batch_loss(config, q @ d.T, rows, batch)


def _in_batch_loss(config: SoftTokensConfig, cosines: torch.Tensor, rows: TrainingRows, batch: torch.Tensor):
    excluded = rows.known.mask(batch, batch, 1 + config.n_negatives)
    positive_column = torch.arange(len(batch))
    excluded[positive_column, positive_column] = True
    excluded = excluded.to(cosines.device)
    if config.loss == "mw":
        return mw_from_scores(cosines[positive_column, positive_column], cosines[~excluded], config.tau)
    return infonce_from_scores(cosines, positive_column.to(cosines.device), excluded,
                               config.temperature or SOFTREPA_TEMPERATURE)


class DynamicNegatives:
    """ADORE's objective for query-side soft tokens: each query's negatives are re-retrieved from the frozen
    corpus vectors with its current vector at every step, and the ΔMRR-weighted pairwise loss is taken."""

    def __init__(self, config: SoftTokensConfig, dataset: BeirDataset, frozen: dict[str, torch.Tensor]) -> None:
        self.doc_matrix = torch.stack(list(frozen.values()))
        row = {d: i for i, d in enumerate(frozen)}
        self.positives = {q: [row[d] for d, r in docs.items() if r > 0 and d in row]
                          for q, docs in dataset.qrels(config.split).items()}
        self.k, self.tau, self.normalize = config.adore_top_k, config.tau, config.adore_normalize

    def __call__(self, q: torch.Tensor, qids: list[str]) -> torch.Tensor:
        return dense_adore_loss(q, self.doc_matrix.to(q.device), [self.positives[x] for x in qids], self.k, self.tau,
                                self.normalize)


def _soft_model(config: SoftTokensConfig):
    """The frozen base model (eval mode) and its soft-token copy, whose prompts and gates alone learn."""
    base = load_sentence_transformer(config.model)
    base.max_seq_length = config.max_seq_length
    base.eval()
    soft = add_soft_tokens(load_sentence_transformer(config.model), config.soft_tokens, config.soft_layers)
    soft.max_seq_length = config.max_seq_length
    logger.info("soft tokens: K=%d, layers=%d, side=%s: %d trainable parameters", config.soft_tokens,
                config.soft_layers, config.side, trainable_parameters(soft))
    return base, soft


def train_soft_tokens(config: SoftTokensConfig, objective: str | None = None,
                      time_budget_s: float | None = None) -> dict:
    """``objective``: ``infonce`` (in-batch, plus mined negatives; or MW with ``loss=mw``) or ``adore``
    (query side only: dynamic negatives from the frozen corpus, ADORE's loss, gradient clipped at 1).
    ``time_budget_s``: stop after the first epoch that ends past this many training seconds (best kept)."""
    objective = objective or config.objective
    if objective == "adore" and config.side != "query":
        raise ValueError("the adore objective needs --side query (documents keep their frozen vectors)")
    output, resume_from = prepare_output(config)
    dataset, negatives = load_dataset(config.data), load_negatives(config.negatives_file)
    base, soft = _soft_model(config)
    frozen: dict[str, torch.Tensor] = {}
    if config.side == "query":  # documents never move: their vectors come from the cache, no grad
        frozen = dict(zip(dataset.doc_ids, _frozen_vectors(base, config, dataset, dataset.doc_ids), strict=True))
    dev = _dev(config, dataset, base, frozen)
    dynamic = DynamicNegatives(config, dataset, frozen) if objective == "adore" else None
    rows = EpochRows(lambda epoch: epoch_rows(dataset, config, negatives, epoch))
    per_epoch = steps_per_epoch(len(rows), config.batch_size)
    total = per_epoch * math.ceil(config.epochs)
    total = min(total, config.max_steps) if config.max_steps > 0 else total
    sampler = EpochOrderSampler(len(rows), reseeded_permutations(len(rows), config.seed))
    early = BestModelEarlyStopping(DEV_METRIC, output / CHECKPOINTS / "best", config.early_stopping_patience,
                                   min_step=config.min_epochs * per_epoch)
    trainer = QueryTrainer(
        model=soft, train_dataset=rows, eval_dataset=rows,  # Trainer schedules evaluations only with one
        args=training_arguments(config, output, per_epoch, total, resume_from is not None,
                                max_grad_norm=1.0 if dynamic else 0.0),  # ADORE's max_grad_norm; none for InfoNCE
        data_collator=SoftTokenCollator(soft.preprocess, rows, dataset, config),
        callbacks=[EpochSync(per_epoch, sampler, rows)], step_loss=SoftTokenStep(config, base, rows, frozen, dynamic),
        dev=dev, dev_metric=DEV_METRIC, sampler=sampler,
        step_metrics=lambda model: {"mean_abs_gate": float(torch.tanh(model[0].gates.detach()).abs().mean())})
    base.to(trainer.args.device)
    steps, seconds = run_trainer(trainer, early, TimeBudget(time_budget_s), output, resume_from)
    if not trainer.is_world_process_zero():
        return {}
    zero_dev = next((r[DEV_METRIC] for r in read_log(output / LOG_FILE) if r["step"] == 0 and DEV_METRIC in r), None)
    if (early.best_dir / PROMPTS_FILE).is_file():
        best = load_file(str(early.best_dir / PROMPTS_FILE))
        soft[0].load_state_dict({k: best[k] for k in ("prompts", "gates")}, strict=False)
    soft.eval()
    _save(soft, config, output)
    plot_training_curve(output / LOG_FILE, output / "training_curve.png", DEV_METRIC)
    summary = {"train_seconds": seconds, "samples_per_s": steps * config.batch_size * world_size() / seconds,
               "steps": steps, "epochs_run": math.ceil(steps / per_epoch),
               "best_epoch": None if dev is None else math.ceil(early.best_step / per_epoch),
               "best_dev_ndcg@10": early.best_value, "zero_shot_dev_ndcg@10": zero_dev,
               "trainable_params": trainable_parameters(soft), "time_budget_s": time_budget_s,
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rows": len(rows),
               "side": config.side, "soft_tokens": config.soft_tokens, "soft_layers": config.soft_layers,
               "loss": "adore" if dynamic else config.loss,
               "tau": config.tau if dynamic else config.temperature or SOFTREPA_TEMPERATURE}
    atomic_write_json(output / "train_summary.json", summary)
    report_outputs(output)
    return summary


def _save(soft, config: SoftTokensConfig, output: Path) -> None:
    """query: towers.json over the untouched document model; doc: the reverse; both: one plain model folder."""
    base_id = resolve_model_path(config.model)[0] if config.model != "default" else DEFAULT_MODEL_ID
    if config.side == "both":
        soft.save(str(output))
        return
    soft.save(str(output / config.side))
    towers = {"query": "query", "document": base_id} if config.side == "query" else \
        {"query": base_id, "document": "doc"}
    atomic_write_json(output / TOWERS_FILE, towers)
