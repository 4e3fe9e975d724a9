"""Dev evaluation for the query loops (ADORE, soft tokens): the query tower
against fixed document vectors, exact search, nDCG@10 on the (graded) dev qrels."""

from __future__ import annotations

import logging

import torch
from tqdm.auto import tqdm

from retriever.data import BeirDataset
from retriever.evaluate import evaluate_run
from training.loop import embed_texts

logger = logging.getLogger(__name__)


class DenseDev:
    """nDCG@10 of ``query_model`` retrieving the top ``k`` of ``doc_matrix`` (rows = ``doc_ids``)."""

    def __init__(self, dataset: BeirDataset, split: str, doc_ids: list[str], doc_matrix: torch.Tensor,
                 k: int = 100, batch_size: int = 64) -> None:
        self.qrels = dataset.qrels(split)
        self.query_ids = sorted(self.qrels)
        self.texts = [dataset.queries[q] for q in self.query_ids]
        self.doc_ids, self.doc_matrix = doc_ids, doc_matrix.float()
        self.k, self.batch_size = min(k, len(doc_ids)), batch_size

    def __call__(self, query_model) -> float:
        was_training = query_model.training
        query_model.eval()
        run: dict[str, dict[str, float]] = {}
        starts = range(0, len(self.texts), self.batch_size)
        with torch.no_grad():
            for start in tqdm(starts, desc=f"dev evaluation ({len(self.texts)} queries)", leave=False):
                q = embed_texts(query_model, self.texts[start:start + self.batch_size]).float().cpu()
                top = (q @ self.doc_matrix.T).topk(self.k, dim=1)
                for row, (values, rows) in enumerate(zip(top.values.tolist(), top.indices.tolist(), strict=True)):
                    run[self.query_ids[start + row]] = {self.doc_ids[r]: v for r, v in zip(rows, values, strict=True)}
        query_model.train(was_training)
        return evaluate_run(self.qrels, run, ("ndcg@10",))["ndcg@10"]
