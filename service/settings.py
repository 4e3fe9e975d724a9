"""Service settings from environment variables (prefix ``RETRIEVER_``) and an optional env file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from retriever import limits


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RETRIEVER_", env_file=".env", extra="ignore")

    indexes: list[str] = Field(default_factory=list, description="Index names or paths to serve; first is default")
    index_dir: Path = Path("indexes")
    reranker: str | None = Field(None, description="Reranker folder (cross-encoder or causal LM)")
    api_key: str | None = Field(None, description="Bearer key required on every route but the health probes")
    use_gpu: bool = True
    fallback_to_previous: bool = Field(False, description="Serve the previous saved version of an index whose "
                                                          "current version is damaged (logged at ERROR)")
    backend: Literal["auto", "torch", "onnx", "onnx-int8"] = Field(
        "auto", description="Encoder and cross-encoder runtime; auto: the fastest exported one that passed its guard")

    max_query_chars: int = limits.MAX_QUERY_CHARS
    max_batch: int = limits.MAX_BATCH
    max_top_k: int = limits.MAX_TOP_K
    max_total_hits: int = Field(limits.MAX_TOTAL_HITS, description="Queries x top_k in one search request")
    max_rerank_documents: int = limits.MAX_RERANK_DOCUMENTS
    max_document_chars: int = limits.MAX_DOCUMENT_CHARS
    max_body_bytes: int = 10 * 1024 * 1024
    body_timeout_s: float = Field(30.0, description="Longest wait for the next chunk of a request body (408)")
    keep_alive_s: int = Field(5, description="uvicorn: close an idle keep-alive connection after this")
    loop: Literal["auto", "asyncio", "uvloop"] = Field(
        "auto", description="uvicorn's event loop; auto: uvloop when installed (a dependency), else asyncio")

    batch_max_size: int = 64
    batch_wait_ms: float = 2.0
    one_trip_search: bool = Field(True, description="A dense search arriving when the encoder and the index are "
                                                    "idle encodes, searches and fetches in one trip to the index "
                                                    "thread instead of two hops (issue 18); false: always two")
    vector_cache_size: int = Field(4096, ge=0, description="Texts whose vectors the service keeps in memory (an "
                                                           "LRU; 0: encode every text). It never writes the "
                                                           "on-disk embedding cache")
    lexical_snapshot: bool = Field(True, description="Score hybrid and lexical passes in numpy from a snapshot of "
                                                     "the FTS5 postings (same scores as bm25(), ~10x faster), "
                                                     "re-read in the background after writes; false: FTS5 only")
    torch_threads: int = Field(default_factory=lambda: max(1, os.cpu_count() or 1))
    log_json: bool = True
