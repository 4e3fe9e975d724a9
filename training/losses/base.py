"""What the batch losses share: embedding the columns, the score matrix, known-positive masks and DDP."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from sentence_transformers.util.distributed import all_gather, get_rank
from torch import Tensor, nn


class KnownPositives:
    """Which (query, document) pairs of the training data are labelled relevant.

    ``rows[r]`` gives the query id and the document ids (positive first, then negatives) of training row
    ``r``. :meth:`mask` answers, for the rows of a batch, which batch documents are known positives of
    which query, with one vectorised ``np.isin`` over integer pair codes.
    """

    def __init__(self, qrels: dict[str, dict[str, int]], rows: Sequence[tuple[str, Sequence[str]]]) -> None:
        doc_ids = sorted({d for docs in qrels.values() for d in docs} | {d for _, ds in rows for d in ds})
        query_ids = sorted(set(qrels) | {q for q, _ in rows})
        self._doc = {d: i for i, d in enumerate(doc_ids)}
        query_index = {q: i for i, q in enumerate(query_ids)}
        self.n_docs = len(doc_ids)
        self.row_query = np.array([query_index[q] for q, _ in rows], dtype=np.int64)
        width = max(len(ds) for _, ds in rows)
        self.row_docs = np.full((len(rows), width), -1, dtype=np.int64)
        for r, (_, ds) in enumerate(rows):
            self.row_docs[r, : len(ds)] = [self._doc[d] for d in ds]
        pairs = [query_index[q] * self.n_docs + self._doc[d] for q, docs in qrels.items()
                 for d, rel in docs.items() if rel > 0]
        self.codes = np.unique(np.array(pairs, dtype=np.int64))

    def mask(self, query_rows: Tensor, doc_rows: Tensor, n_columns: int) -> Tensor:
        """Bool ``[len(query_rows), n_columns * len(doc_rows)]``: document column-major as in the batch."""
        q = self.row_query[query_rows.cpu().numpy()]
        d = self.row_docs[doc_rows.cpu().numpy(), :n_columns].T.reshape(-1)  # positives, then negatives
        codes = q[:, None] * self.n_docs + d[None, :]
        known = np.isin(codes, self.codes) & (d[None, :] >= 0)
        return torch.from_numpy(known).to(query_rows.device)


def embed(model: nn.Module, features: Iterable[dict[str, Tensor]]) -> list[Tensor]:
    return [model(f)["sentence_embedding"] for f in features]


def gather(tensor: Tensor, with_grad: bool) -> Tensor:
    return all_gather(tensor, with_grad=with_grad)


def batch_scores(
    model: nn.Module,
    features: Iterable[dict[str, Tensor]],
    labels: Tensor,
    known: KnownPositives | None,
    gather_across_devices: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """Cosine scores of local queries against every document of the (global) batch.

    Returns ``(scores [b, D], positive_column [b], excluded [b, D])``: ``excluded`` marks each query's
    own positive and every other known positive, so that neither is ever used as a negative.
    """
    embeddings = [nn.functional.normalize(e, dim=-1) for e in embed(model, features)]
    queries, docs = embeddings[0], embeddings[1:]
    local = queries.size(0)
    offset = 0
    doc_labels = labels
    if gather_across_devices:
        docs = [gather(d, with_grad=True) for d in docs]
        doc_labels = gather(labels, with_grad=False)
        offset = get_rank() * local
    all_docs = torch.cat(docs, dim=0)
    scores = queries @ all_docs.T
    positive_column = torch.arange(offset, offset + local, device=scores.device)
    excluded = torch.zeros_like(scores, dtype=torch.bool)
    excluded[torch.arange(local), positive_column] = True
    if known is not None:
        excluded |= known.mask(labels, doc_labels, len(docs))
    return scores, positive_column, excluded


class BatchLoss(nn.Module):
    """Shared plumbing of the batch losses: the model, known positives, temperature and DDP gathering.
    Subclasses turn :meth:`scores` into a loss."""

    def __init__(self, model: nn.Module, known: KnownPositives | None = None, temperature: float = 0.05,
                 gather_across_devices: bool = False) -> None:
        super().__init__()
        self.model, self.known = model, known
        self.temperature, self.gather_across_devices = temperature, gather_across_devices

    def scores(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return batch_scores(self.model, sentence_features, labels, self.known, self.gather_across_devices)
