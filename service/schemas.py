"""Request and response models (the OpenAPI schema)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator


class MinRelevance(BaseModel):
    min_relevance: float = Field(..., ge=0.0, le=1.0)


class SearchRequest(BaseModel):
    query: str | None = Field(None, description="One query; or use `queries`")
    queries: list[str] | None = Field(None, description="A batch of queries")
    index: str | None = Field(None, description="Index name (default: the first served)")
    top_k: int = Field(10, ge=1)
    mode: Literal["dense", "lexical", "hybrid"] | None = Field(
        None, description="Default: hybrid when the index has a lexical side, else dense")
    fusion: Literal["rrf", "convex", "tmm", "calibrated"] | None = Field(
        None, description="Hybrid fusion; default: the one `retriever calibrate` chose on dev (else convex)")
    where: dict[str, Any] | None = Field(
        None, description='Metadata filter, applied inside both searches: {"lang": "en", "tag": {"in": ["a", "b"]}, '
                          '"year": {"gte": 2015, "lt": 2020}, "date": {"gte": "2024-01-01"}}')
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
    score: float = Field(..., description="cosine (dense), BM25 (lexical) or the fused score (hybrid)")
    relevance: float | None = Field(None, description="calibrated probability of relevance, when the index is "
                                                      "calibrated (hybrid: the calibrated fusion's)")
    dense_score: float | None = Field(None, description="hybrid: the cosine")
    lexical_score: float | None = Field(None, description="hybrid: the BM25 score (0: no query term matches)")
    rerank_score: float | None = None
    title: str | None = None
    text: str | None = None


class SearchResult(BaseModel):
    query: str
    hits: list[SearchHit]


class SearchResponse(BaseModel):
    index: str
    mode: str = "dense"
    fusion: str | None = None
    calibrated: bool = Field(..., description="false: hits carry no relevance (no adapter, or lexical mode)")
    threshold: float | None = None
    results: list[SearchResult]
    timings_ms: dict[str, float]


class RerankRequest(BaseModel):
    query: str = Field(..., min_length=1)
    documents: list[str] = Field(..., min_length=1)
    top_n: int | None = Field(None, ge=1)
    return_documents: bool = False


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: str | None = None


class RerankResponse(BaseModel):
    model: str
    results: list[RerankResult]


class EmbedRequest(BaseModel):
    inputs: str | list[str]
    kind: Literal["query", "document"] = "query"
    index: str | None = None


class EmbedResponse(BaseModel):
    model: str
    embeddings: list[list[float]]


class OpenAIEmbeddingRequest(BaseModel):
    input: str | list[str]
    model: str | None = None
    encoding_format: Literal["float"] = "float"


class OpenAIEmbedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float]


class OpenAIEmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIEmbedding]
    model: str
    usage: dict[str, int]


class Document(BaseModel):
    id: str = Field(..., min_length=1, max_length=512)
    title: str = ""
    text: str = Field(..., min_length=1)
    metadata: dict[str, Any] = Field(default_factory=dict, description="Filterable with `where` in /search")


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
