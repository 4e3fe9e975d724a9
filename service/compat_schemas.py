"""Request and response models of the client-compatible routes: TEI (/embed, /rerank), OpenAI (/v1/embeddings,
/v1/models), Cohere (/v1/rerank, /v2/rerank, /v1/embed, /v2/embed) and Jina (Cohere's rerank shape).

Each request model rejects fields its API's spec does not know and accepts every field the official SDKs send.
Texts with lone surrogates (unencodable as UTF-8) are rejected with a 422 instead of failing in the tokenizer.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, StrictInt, field_validator

from service.schemas import CleanText, StrictModel

Text = CleanText  # no lone surrogates (a 422 at the edge)


class CompatModel(StrictModel):
    """Unknown fields are refused; each API's own fields are declared on its models."""


# ---- TEI (and our own extensions `kind`, `index`) -----------------------------------------------------
Direction = Literal["Left", "Right", "left", "right"]


class EmbedRequest(CompatModel):
    """TEI's /embed body; the response is TEI's bare list of vectors."""

    inputs: Text | list[Text]
    normalize: bool = Field(True, description="L2-normalise; false returns the model's own output")
    truncate: bool = Field(False, description="false: inputs over the model's token limit get a 413")
    truncation_direction: Direction = "Right"
    prompt_name: Text | None = Field(None, description="not supported (use `kind`); only null is accepted")
    dimensions: int | None = Field(None, ge=1, description="Matryoshka models only")
    kind: Literal["query", "document"] = Field("query", description="extension: which tower encodes")
    index: Text | None = Field(None, description="extension: index whose model encodes (default: the first)")


class TEIRerankRequest(CompatModel):
    query: Text = Field(..., min_length=1)
    texts: list[Text] = Field(..., min_length=1)
    raw_scores: bool = False
    return_text: bool = False
    truncate: bool = False
    truncation_direction: Direction = "Right"


class TEIRank(BaseModel):
    index: int
    score: float
    text: str | None = None


# ---- Cohere / Jina rerank -----------------------------------------------------------------------------
class CohereRerankBase(CompatModel):
    query: Text = Field(..., min_length=1)
    top_n: int | None = Field(None, ge=1)
    max_tokens_per_doc: int | None = Field(None, ge=1)
    priority: int | None = None


class CohereRerankV1Request(CohereRerankBase):
    """Cohere v1 (and Jina): documents are strings or objects; `rank_fields` picks the object fields."""

    documents: list[Text | dict[Text, Text]] = Field(..., min_length=1)
    model: Text | None = None
    return_documents: bool = False
    rank_fields: list[Text] | None = None
    max_chunks_per_doc: int | None = Field(None, ge=1, description="accepted; documents are not chunked")


class CohereRerankV2Request(CohereRerankBase):
    documents: list[Text] = Field(..., min_length=1)
    model: Text


class CohereRerankResult(BaseModel):
    index: int
    relevance_score: float
    document: dict[str, Any] | None = None


class CohereRerankResponse(BaseModel):
    id: str
    results: list[CohereRerankResult]
    meta: dict[str, Any]
    model: str | None = Field(None, description="on /rerank only (Jina's shape carries it)")


# ---- Cohere embed ------------------------------------------------------------------------------------
EmbeddingType = Literal["float", "int8", "uint8", "binary", "ubinary", "base64"]
InputType = Literal["search_document", "search_query", "classification", "clustering", "image"]


class CohereEmbedV1Request(CompatModel):
    texts: list[Text] | None = None
    images: list[str] | None = None
    model: Text | None = None
    input_type: InputType | None = None
    embedding_types: list[EmbeddingType] | None = None
    truncate: Literal["NONE", "START", "END"] | None = Field("END", description="null: END")

    @field_validator("embedding_types")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("give at least one embedding type")
        return list(dict.fromkeys(value)) if value else value


class CohereEmbedV2Request(CohereEmbedV1Request):
    model: Text
    input_type: InputType
    inputs: list[dict[str, Any]] | None = None
    max_tokens: int | None = Field(None, ge=1)
    output_dimension: int | None = Field(None, ge=1)
    priority: int | None = None


class CohereEmbedResponse(BaseModel):
    id: str
    response_type: Literal["embeddings_floats", "embeddings_by_type"]
    embeddings: list[list[float]] | dict[str, list]
    texts: list[str]
    meta: dict[str, Any]


# ---- OpenAI ------------------------------------------------------------------------------------------
class OpenAIEmbeddingRequest(CompatModel):
    input: Text | list[Text] | list[StrictInt] | list[list[StrictInt]] = Field(
        ..., description="text(s), or token ids of the served model's own tokenizer (decoded before encoding)")
    model: Text | None = Field(None, description="a served index name or one of its model aliases (GET /v1/models)")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, description="Matryoshka models only")
    user: Text | None = None
    input_type: Literal["query", "document", "passage"] = Field(
        "document", description="extension: the tower that encodes (OpenAI itself has one)")


class OpenAIEmbedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class OpenAIUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIEmbedding]
    model: str
    usage: OpenAIUsage


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "retrieval-trainer"


class OpenAIModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]
