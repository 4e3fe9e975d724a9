"""The manifest written beside every index: what built it, from what, and when."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, Field

from retriever.errors import DataError


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class DataSource(BaseModel):
    dataset: str
    path: str
    sha256: str


class IndexManifest(BaseModel):
    format_version: int = 1
    name: str
    model_id: str
    model_fingerprint: str
    query_model_id: str | None = None
    query_model_fingerprint: str | None = None
    dimension: int
    metric: str = "inner_product"
    normalized: bool = True
    index_spec: str = "Flat"
    backend: str = "faiss"  # the vector store
    inference_backend: str = "torch"  # the runtime that encoded the documents: torch | onnx | onnx-int8
    backend_options: dict[str, Any] = Field(default_factory=dict)
    count: int = 0
    data_source: DataSource | None = None
    created_at: str = Field(default_factory=utc_now)
    updated_at: str = Field(default_factory=utc_now)
    version: str | None = None
    adapter: dict[str, Any] | None = None


def check_data_source(manifest: IndexManifest, dataset, force: bool = False) -> None:
    """Refuse to evaluate, calibrate or mine an index on a dataset whose corpus is not the one it was built
    from (compared by the corpus file's sha256, so a derived copy such as hide-positives passes)."""
    source = manifest.data_source
    if force or source is None or source.sha256 == dataset.content_hash:
        return
    raise DataError(f"index '{manifest.name}' was built from dataset '{source.dataset}' ({source.path}, corpus "
                    f"sha256 {source.sha256[:12]}), not from '{dataset.name}' (corpus sha256 "
                    f"{dataset.content_hash[:12]}); pass --force to run on it anyway")
