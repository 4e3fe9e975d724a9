"""Service settings from environment variables (prefix ``RETRIEVER_``) and an optional env file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RETRIEVER_", env_file=".env", extra="ignore")

    indexes: list[str] = Field(default_factory=list, description="Index names or paths to serve; first is default")
    index_dir: Path = Path("indexes")
    reranker: str | None = Field(None, description="Reranker folder (cross-encoder or causal LM)")
    api_key: str | None = Field(None, description="Bearer key required on every route but the health probes")
    use_gpu: bool = True
    backend: Literal["auto", "torch", "onnx", "onnx-int8"] = Field(
        "auto", description="Encoder and cross-encoder runtime; auto: the fastest exported one that passed its guard")

    max_query_chars: int = 2048
    max_batch: int = 64
    max_top_k: int = 1000
    max_rerank_documents: int = 1000
    max_document_chars: int = 20000
    max_body_bytes: int = 10 * 1024 * 1024

    batch_max_size: int = 64
    batch_wait_ms: float = 2.0
    torch_threads: int = Field(default_factory=lambda: max(1, os.cpu_count() or 1))
    log_json: bool = True
