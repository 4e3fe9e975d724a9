"""What the routes call: the served indexes, model executors, micro-batchers, reload and the pipeline."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from retriever.encoders import TextEncoder, VectorLRU
from retriever.errors import (
    IndexMismatchError,
    IndexNotFoundError,
    NotCalibratedError,
    NotReadyError,
    RetrieverError,
)
from retriever.hybrid_milvus import native_text
from retriever.live import LiveIndex
from retriever.onnx.files import BACKEND_ENV
from retriever.rerank import BiEncoderReranker, Reranker, load_reranker
from retriever.search import SearchOutcome, fusion_params, require_store, search
from retriever.types import doc_text
from service.batching import MicroBatcher
from service.metrics import ServiceMetrics, Timer
from service.settings import Settings

logger = logging.getLogger(__name__)


def default_mode(live: LiveIndex) -> str:
    """Hybrid when the index has a lexical side, unless its calibration covers the dense side only (fitted
    before the index had a lexical side): then dense, so that the default stays calibrated."""
    if not live.has_lexical:
        return "dense"
    if live.relevance is not None and not live.relevance.info.get("hybrid"):
        return "dense"
    return "hybrid"


class Runtime:
    def __init__(self, settings: Settings, metrics: ServiceMetrics) -> None:
        self.settings, self.metrics = settings, metrics
        torch.set_num_threads(settings.torch_threads)
        os.environ[BACKEND_ENV] = settings.backend  # the default of every encoder and reranker loaded below
        self.model_executor = ThreadPoolExecutor(1, thread_name_prefix="model")  # one model call at a time
        self.index_executor = ThreadPoolExecutor(1, thread_name_prefix="index")  # index reads/writes serialised
        self.indexes: dict[str, LiveIndex] = {}
        self.sources: dict[str, Path] = {}
        self.reranker: Reranker | None = None
        self._batchers: dict[tuple, MicroBatcher] = {}
        self._index_calls = 0  # calls queued or running on the index thread
        # served texts are encoded through this LRU, never the on-disk cache (its writes rewrite a whole table)
        self.vector_lru = VectorLRU(settings.vector_cache_size)
        self.ready = False

    # ---- loading -------------------------------------------------------------------------------------
    def _source(self, name_or_path: str) -> Path:
        path = Path(name_or_path)
        return path if path.is_dir() else self.settings.index_dir / name_or_path

    def load_all(self) -> None:
        if not self.settings.indexes:
            raise RetrieverError("no index to serve: pass --index NAME (or set RETRIEVER_INDEXES)")
        for entry in self.settings.indexes:
            live = LiveIndex.open(self._source(entry), use_gpu=self.settings.use_gpu,
                                  fallback=self.settings.fallback_to_previous,
                                  lexical_snapshot=self.settings.lexical_snapshot)
            self.indexes[live.name] = live
            self.sources[live.name] = self._source(entry)
            self.metrics.index_size.labels(live.name).set(len(live.index))
        first = next(iter(self.indexes.values()))
        self.reranker = (load_reranker(self.settings.reranker) if self.settings.reranker
                         else BiEncoderReranker(first.encoder))
        self.ready = True
        logger.info("serving %s; reranker %s", ", ".join(self.indexes), self.reranker.name)

    def get(self, name: str | None) -> LiveIndex:
        if not self.indexes:
            raise NotReadyError("the service is still loading")
        if name is None:
            return next(iter(self.indexes.values()))
        if name not in self.indexes:
            raise IndexNotFoundError(f"unknown index '{name}' (served: {', '.join(self.indexes)})")
        return self.indexes[name]

    async def reload(self, name: str | None) -> LiveIndex:
        """Open the index's current version beside the old one, then swap: requests in flight keep the
        old object and finish on it; new requests get the new one."""
        old = self.get(name)
        # the new object shares the old one's store (same file): no second connection to close, or to leak
        options = {"use_gpu": self.settings.use_gpu, "fallback": self.settings.fallback_to_previous,
                   "store": old.store}

        def open_new() -> LiveIndex:
            try:
                return LiveIndex.open(self.sources[old.name], encoder=old.encoder, **options)
            except IndexMismatchError:  # the new version was built with another model
                return LiveIndex.open(self.sources[old.name], **options)

        new = await asyncio.get_running_loop().run_in_executor(self.index_executor, open_new)
        self.indexes[old.name] = new
        self.metrics.index_size.labels(new.name).set(len(new.index))
        logger.info("reloaded %s: %s -> %s", new.name, old.manifest.version, new.manifest.version)
        return new

    # ---- batched model calls --------------------------------------------------------------------------
    def _batcher(self, key: tuple, fn) -> MicroBatcher:
        if key not in self._batchers:
            self._batchers[key] = MicroBatcher(fn, self.model_executor, self.settings.batch_max_size,
                                               self.settings.batch_wait_ms, self.metrics.batch_size, key[0])
        return self._batchers[key]

    async def encode(self, encoder: TextEncoder, texts: list[str], side: str) -> np.ndarray:
        batcher = self._batcher((f"encode-{side}", id(encoder)),
                                lambda batch: encoder.encode_in_memory(batch, side, self.vector_lru))
        return np.asarray(await batcher.submit(texts), dtype=np.float32)

    async def rerank_pairs(self, queries: list[str], documents: list[str]) -> np.ndarray:
        reranker = self.reranker
        batcher = self._batcher(("rerank", id(reranker)), lambda pairs: reranker.score_pairs(
            [q for q, _ in pairs], [d for _, d in pairs]))
        return np.asarray(await batcher.submit(list(zip(queries, documents, strict=True))), dtype=np.float32)

    async def in_index_thread(self, fn, *args):
        self._index_calls += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.index_executor, fn, *args)
        finally:
            self._index_calls -= 1

    def _one_trip(self, live: LiveIndex, mode: str) -> bool:
        """Whether a dense search may encode on the index thread: only when both threads are idle, so it is
        a batch of one either way and no other model call runs beside it."""
        if not self.settings.one_trip_search or mode != "dense" or self._index_calls:
            return False
        batcher = self._batchers.get(("encode-query", id(live.encoder.query)))
        return batcher is None or batcher.idle

    # ---- search ----------------------------------------------------------------------------------------
    @staticmethod
    def _min_relevance(request, live: LiveIndex, mode: str) -> float | None:
        """The relevance floor the request's ``filter`` asks for (None: keep every hit)."""
        if isinstance(request.filter, str):
            return None  # "none", or "calibrated": the outcome's own threshold, applied in search()
        if live.relevance is None or mode == "lexical":
            raise NotCalibratedError(f"min_relevance needs calibrated relevance: index '{live.name}' "
                                 + ("has no adapter (run 'retriever calibrate')" if live.relevance is None
                                    else "returns none in lexical mode") + ", or use filter 'none'")
        return request.filter.min_relevance

    def _search(self, live: LiveIndex, request, mode: str, vectors, min_relevance, k: int,
                lexical_passes=None) -> SearchOutcome:
        params = fusion_params(live.relevance.info if live.relevance else None, request.fusion)
        calibrated = request.filter == "calibrated"
        outcome = search(live.index, live.encoder, request.texts, k, mode=mode, store=live.store,
                         relevance_model=live.relevance, params=params, where=request.where,
                         query_vectors=vectors, min_relevance=min_relevance, lexical_passes=lexical_passes)
        if calibrated and outcome.threshold is not None:
            outcome.hits = [[h for h in hits if h.relevance is None or h.relevance >= outcome.threshold]
                            for hits in outcome.hits]
        return outcome

    def _search_and_fetch(self, live: LiveIndex, request, mode, vectors, min_relevance, k, passes, timer: Timer):
        """Search, then read the hits' texts when needed: one trip to the index thread, not two. With no
        ``vectors``, encode the queries first (the one-trip dense path)."""
        if vectors is None and mode != "lexical":
            with timer.stage("encode"):
                vectors = live.encoder.query.encode_in_memory(request.texts, "query", self.vector_lru)
        with timer.stage("search"):
            outcome = self._search(live, request, mode, vectors, min_relevance, k, passes)
        ids = (sorted({h.id for hits in outcome.hits for h in hits})
               if request.return_text or request.rerank else [])
        with timer.stage("fetch"):
            docs = live.texts(ids) if ids else {}
        return outcome, docs

    @staticmethod
    def _lexical_passes(live: LiveIndex, request) -> tuple[list, float]:
        start = time.perf_counter()
        passes = [live.store.lexical_pass(q, request.where) for q in request.texts]
        return passes, round(1000 * (time.perf_counter() - start), 3)

    async def _encode_query(self, live: LiveIndex, request, mode: str, timer: Timer):
        """The query vectors; in hybrid mode the FTS pass (which needs no vector) runs on the index thread
        meanwhile, so hybrid pays max(encode, FTS) rather than their sum (not for a Milvus collection that
        runs BM25 itself: its FTS5 pass would go unused)."""
        with timer.stage("encode"):
            if mode != "hybrid" or native_text(live.index):
                return await self.encode(live.encoder.query, request.texts, "query"), None
            vectors, (passes, lexical_ms) = await asyncio.gather(
                self.encode(live.encoder.query, request.texts, "query"),
                self.in_index_thread(self._lexical_passes, live, request))
        timer.ms["search.lexical_pass"] = lexical_ms
        return vectors, passes

    async def search(self, request, timer: Timer) -> tuple[LiveIndex, SearchOutcome, dict, dict]:
        live = self.get(request.index)
        texts = request.texts
        mode = request.mode or default_mode(live)
        require_store(live.store, mode, request.where, live.name)  # a 409 before the FTS pass, not a 500 in it
        min_relevance = self._min_relevance(request, live, mode)
        one_trip = mode == "lexical" or self._one_trip(live, mode)
        vectors, passes = (None, None) if one_trip else await self._encode_query(live, request, mode, timer)
        depth = max(request.top_k, request.rerank_depth if request.rerank else 0)
        outcome, docs = await self.in_index_thread(self._search_and_fetch, live, request, mode, vectors,
                                                   min_relevance, depth, passes, timer)
        for stage, ms in outcome.timings_ms.items():
            if stage != "encode":
                timer.ms[f"search.{stage}"] = ms
        rerank_scores: dict = {}
        if request.rerank:
            pairs = [(row, h.id) for row, hits in enumerate(outcome.hits) for h in hits[: request.rerank_depth]]
            with timer.stage("rerank"):
                scores = await self.rerank_pairs([texts[r] for r, _ in pairs],
                                                 [doc_text(*docs.get(d, ("", ""))) for _, d in pairs])
            rerank_scores = {pair: float(s) for pair, s in zip(pairs, scores, strict=True)}
        return live, outcome, docs, rerank_scores

    async def close(self) -> None:
        for batcher in self._batchers.values():
            await batcher.close()
        self.model_executor.shutdown(wait=False, cancel_futures=True)
        self.index_executor.shutdown(wait=True)
        for live in self.indexes.values():
            live.close()
