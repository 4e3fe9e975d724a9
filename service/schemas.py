"""Request and response models (the OpenAPI schema).

Request models derive from :class:`StrictModel` (unknown fields are refused, ints and bools are not coerced)
and type their texts with :data:`CleanText` (no lone surrogates, which cannot be encoded as UTF-8).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict, model_validator

from retriever.limits import NOT_BLANK, is_blank


def _encodable(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"text holds a lone surrogate (\\u{ord(exc.object[exc.start]):04x}) at character "
                         f"{exc.start}: it is not valid Unicode") from None
    return text


def _not_blank(text: str) -> str:
    if is_blank(text):
        raise ValueError("must not be empty or blank")
    return text


CleanText = Annotated[str, AfterValidator(_encodable)]
"""A string that encodes as UTF-8: a lone surrogate (``"\\ud800"``) is a 422 at the edge."""
QueryText = Annotated[CleanText, AfterValidator(_not_blank),
                      Field(min_length=1, json_schema_extra={"pattern": NOT_BLANK})]
"""A non-blank :data:`CleanText`; the schema's pattern says what the validator checks."""
def whole_number(value):
    """JSON Schema's ``integer`` includes ``2.0``; a bool or a string is not a number."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


StrictInt = Annotated[int, BeforeValidator(whole_number), Strict()]
StrictBool = Annotated[bool, Strict()]
StrictFloat = Annotated[float, Strict()]  # still takes a JSON integer, never a bool or a string


class StrictModel(BaseModel):
    """Base of request models: ``{"topk": 1}`` or ``{"top_k": true}`` is a 422, not silently something else."""

    model_config = ConfigDict(extra="forbid")


class MinRelevance(StrictModel):
    min_relevance: StrictFloat = Field(..., ge=0.0, le=1.0)


class SearchRequest(StrictModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "oneOf": [{"required": ["query"]}, {"required": ["queries"]}]})

    query: QueryText = Field(None, description="One query; or use `queries`")
    queries: list[QueryText] = Field(None, min_length=1, description="A batch of queries")
    index: CleanText | None = Field(None, description="Index name (default: the first served)")
    top_k: StrictInt = Field(10, ge=1)
    filter: Literal["calibrated", "none"] | MinRelevance = "calibrated"
    rerank: StrictBool = False
    rerank_depth: StrictInt = Field(20, ge=1)
    return_text: StrictBool = True

    @model_validator(mode="after")
    def _one_of(self) -> SearchRequest:
        if (self.query is None) == (self.queries is None):
            raise ValueError("give exactly one of 'query' or 'queries'")
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


class Document(StrictModel):
    id: CleanText = Field(..., min_length=1, max_length=512, description="May contain '/'")
    title: CleanText = ""
    text: CleanText = Field(..., min_length=1)


class DocumentOut(BaseModel):
    id: str
    title: str
    text: str


class UpsertRequest(StrictModel):
    documents: list[Document] = Field(..., min_length=1)
    index: CleanText | None = None


class UpsertResponse(BaseModel):
    index: str
    upserted: int
    count: int


class DeleteResponse(BaseModel):
    index: str
    deleted: str
    count: int


class ReloadRequest(StrictModel):
    index: CleanText | None = None


class ErrorResponse(BaseModel):
    detail: str = Field(..., description="What went wrong, in one sentence")
    request_id: str = Field(..., description="The x-request-id of the request, for the server log")


class TEIErrorResponse(ErrorResponse):
    error: str = Field(..., description="TEI's key: the same sentence as `detail`")
    error_type: Literal["Validation", "Overloaded", "Backend"]


class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIErrorResponse(BaseModel):
    """OpenAI's error body (its SDK raises BadRequestError, NotFoundError ... from it)."""

    error: OpenAIErrorBody


class CohereErrorResponse(BaseModel):
    """Cohere's error body."""

    id: str = Field(..., description="The x-request-id of the request")
    message: str


class FieldError(BaseModel):
    loc: list[str]
    msg: str
    type: str


class ValidationErrorResponse(ErrorResponse):
    errors: list[FieldError] = Field(default_factory=list, description="Every field that failed validation "
                                                                      "(absent when a check beyond the schema failed)")


class TEIValidationErrorResponse(ValidationErrorResponse, TEIErrorResponse):
    pass
