"""BM25 baseline through bm25s (Snowball stemming, English stop words), scored over the whole corpus."""

from __future__ import annotations

import bm25s
import numpy as np
import Stemmer

from retriever.data import BeirDataset
from retriever.types import Run


class Bm25Retriever:
    def __init__(self, dataset: BeirDataset, k1: float = 0.9, b: float = 0.4) -> None:
        self._bm25s = bm25s
        self.stemmer = Stemmer.Stemmer("english")
        self.doc_ids = np.array(dataset.doc_ids, dtype=object)
        self._positions = {d: i for i, d in enumerate(dataset.doc_ids)}
        tokens = bm25s.tokenize(dataset.doc_texts(), stopwords="en", stemmer=self.stemmer, show_progress=False)
        self.model = bm25s.BM25(k1=k1, b=b)
        self.model.index(tokens, show_progress=False)

    def _tokens(self, texts: list[str]):
        return self._bm25s.tokenize(texts, stopwords="en", stemmer=self.stemmer, show_progress=False)

    def search(self, queries: dict[str, str], k: int = 1000) -> Run:
        qids = list(queries)
        k = min(k, len(self.doc_ids))
        docs, scores = self.model.retrieve(self._tokens([queries[q] for q in qids]), k=k, show_progress=False)
        return {
            qid: {d: float(s) for d, s in zip(self.doc_ids[row], score_row, strict=True) if s > 0}
            for qid, row, score_row in zip(qids, docs, scores, strict=True)
        }

    def pair_scores(self, queries: dict[str, str], qrels: dict[str, dict[str, int]]) -> dict[str, dict[str, float]]:
        """BM25 score of each labelled pair, for the AUC protocol."""
        out: dict[str, dict[str, float]] = {}
        for qid, docs in qrels.items():
            all_scores = self.model.get_scores(self._query_token_strings(queries[qid]))
            out[qid] = {d: float(all_scores[self._positions[d]]) for d in docs}
        return out

    def _query_token_strings(self, text: str) -> list[str]:
        tokenized = self._bm25s.tokenize([text], stopwords="en", stemmer=self.stemmer, show_progress=False,
                                         return_ids=False)
        return tokenized[0]
