"""Request and response models (the OpenAPI schema)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator


class MinRelevance(BaseModel):
    min_relevance: float = Field(..., ge=0.0, le=1.0)


class SearchRequest(BaseModel):
    query: str | None = Field(None, description="One query; or use `queries`")
    queries: list[str] | None = Field(None, description="A batch of queries")
    index: str | None = Field(None, description="Index name (default: the first served)")
    top_k: int = Field(10, ge=1)
    filter: Literal["calibrated", "none"] | MinRelevance = "calibrated"
    rerank: bool = False
    rerank_depth: int = Field(20, ge=1)
    return_text: bool = True

    @model_validator(mode="after")
    def _one_of(self) -> SearchRequest:
        if (self.query is None) == (self.queries is None):
            raise ValueError("give exactly one of 'query' or 'queries'")
        if self.queries is not None and not self.queries:
            raise ValueError("'queries' must not be empty")
        if any(not q.strip() for q in self.texts):
            raise ValueError("queries must not be empty or blank")
        return self

    @property
    def texts(self) -> list[str]:
        return [self.query] if self.query is not None else list(self.queries or [])


class SearchHit(BaseModel):
    id: str
    score: float = Field(..., description="cosine similarity")
    relevance: float | None = Field(None, description="calibrated probability, when the index has an adapter")
    rerank_score: float | None = None
    title: str | None = None
    text: str | None = None


class SearchResult(BaseModel):
    query: str
    hits: list[SearchHit]


class SearchResponse(BaseModel):
    index: str
    calibrated: bool = Field(..., description="false: the index has no adapter, scores are raw cosines")
    threshold: float | None = None
    results: list[SearchResult]
    timings_ms: dict[str, float]


class Document(BaseModel):
    id: str = Field(..., min_length=1, max_length=512)
    title: str = ""
    text: str = Field(..., min_length=1)


class UpsertRequest(BaseModel):
    documents: list[Document] = Field(..., min_length=1)
    index: str | None = None


class UpsertResponse(BaseModel):
    index: str
    upserted: int
    count: int


class ReloadRequest(BaseModel):
    index: str | None = None


class ErrorResponse(BaseModel):
    detail: str
