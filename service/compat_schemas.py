"""Request and response models of the client-compatible routes: TEI (/embed, /rerank), OpenAI (/v1/embeddings,
/v1/models), Cohere (/v1/rerank, /v2/rerank, /v1/embed, /v2/embed) and Jina (Cohere's rerank shape).

Each request model rejects fields its API's spec does not know and accepts every field the official SDKs send.
Texts with lone surrogates (unencodable as UTF-8) are rejected with a 422 instead of failing in the tokenizer.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, field_validator, model_validator

from service.schemas import CleanText, QueryText, StrictModel, whole_number

Text = CleanText  # no lone surrogates (a 422 at the edge)
NonBlank = QueryText  # also not empty or blank (the schema's pattern says so)


class CompatModel(StrictModel):
    """Unknown fields are refused; each API's own fields are declared on its models."""


# ---- TEI (and our own extensions `kind`, `index`) -----------------------------------------------------
Direction = Literal["Left", "Right", "left", "right"]


class EmbedRequest(CompatModel):
    """TEI's /embed body; the response is TEI's bare list of vectors."""

    inputs: NonBlank | Annotated[list[NonBlank], Field(min_length=1)]
    normalize: bool = Field(True, description="L2-normalise; false returns the model's own output")
    truncate: bool = Field(False, description="false: inputs over the model's token limit get a 413")
    truncation_direction: Direction = "Right"
    prompt_name: None = Field(None, description="not supported (the model's own prompts apply; pick them with "
                                                 "`kind`): only null is accepted")
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


# Without rank_fields, an object document must carry `text` (what the route ranks).
_TEXT_REQUIRED = {"if": {"required": ["rank_fields"], "properties": {"rank_fields": {"type": "array", "minItems": 1}}},
                  "else": {"properties": {"documents": {"items": {"anyOf": [
                      {"type": "string"}, {"type": "object", "required": ["text"]}]}}}}}


class CohereRerankV1Request(CohereRerankBase):
    """Cohere v1 (and Jina): documents are strings or objects of strings. An object is ranked on its `text`,
    or, with `rank_fields`, on "field: value" lines of the named fields it has (none of them: an empty text)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_TEXT_REQUIRED)

    documents: list[Text | dict[Text, Text]] = Field(..., min_length=1)
    model: Text | None = None
    return_documents: bool = False
    rank_fields: list[Text] | None = None

    @model_validator(mode="after")
    def _text_or_fields(self) -> CohereRerankV1Request:
        if not self.rank_fields:
            missing = [i for i, d in enumerate(self.documents) if isinstance(d, dict) and "text" not in d]
            if missing:
                raise ValueError(f"documents[{missing[0]}] has no 'text' field: give it one, or name the fields "
                                 "to rank on in rank_fields")
        return self
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
InputType = Literal["search_document", "search_query", "classification", "clustering"]  # no "image": text only
NotServed = Annotated[list[Any], Field(max_length=0)] | None


class CohereEmbedV1Request(CompatModel):
    texts: list[NonBlank] = Field(..., min_length=1, description="required: only text embeddings are served")
    images: NotServed = Field(None, description="not served (text models only): null or []")
    model: Text | None = None
    input_type: InputType | None = None
    embedding_types: Annotated[list[EmbeddingType], Field(min_length=1)] | None = None
    truncate: Literal["NONE", "START", "END"] | None = Field("END", description="null: END")

    @field_validator("embedding_types")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        return list(dict.fromkeys(value)) if value else value


class CohereEmbedV2Request(CohereEmbedV1Request):
    model: Text
    input_type: InputType
    inputs: NotServed = Field(None, description="not served (mixed text and image inputs): null or []")
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
TokenId = Annotated[int, Strict(), Field(ge=0), BeforeValidator(whole_number)]  # the schema's `minimum: 0`
TokenIds = Annotated[list[TokenId], Field(min_length=1)]


class OpenAIEmbeddingRequest(CompatModel):
    input: NonBlank | Annotated[list[NonBlank], Field(min_length=1)] | TokenIds | Annotated[
        list[TokenIds], Field(min_length=1)] = Field(
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
