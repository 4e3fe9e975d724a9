"""Request and response models (the OpenAPI schema).

Request models derive from :class:`StrictModel` (unknown fields are refused, ints and bools are not coerced)
and type their texts with :data:`CleanText` (no lone surrogates, which cannot be encoded as UTF-8).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict, model_validator

from retriever.limits import NOT_BLANK, is_blank
from retriever.where import INT64_MAX, INT64_MIN, RANGE_OPS
from retriever.where import KEY as WHERE_KEY


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


_SCALAR = {"anyOf": [{"type": "string"}, {"type": "boolean"},
                     {"type": "number", "minimum": INT64_MIN, "maximum": INT64_MAX}]}
_RANGE = {"anyOf": [{"type": "string"}, {"type": "number", "minimum": INT64_MIN, "maximum": INT64_MAX}]}
WHERE_SCHEMA = {  # what retriever.where.normalise accepts, so the schema and the service agree
    "propertyNames": {"pattern": WHERE_KEY.pattern},
    "additionalProperties": {"anyOf": [_SCALAR, {
        "type": "object", "minProperties": 1, "additionalProperties": False,
        "properties": {"eq": _SCALAR, "in": {"type": "array", "minItems": 1, "items": _SCALAR},
                       **{op: _RANGE for op in RANGE_OPS}}}]},
}


class MinRelevance(StrictModel):
    min_relevance: StrictFloat = Field(..., ge=0.0, le=1.0)


class SearchRequest(StrictModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "oneOf": [{"required": ["query"]}, {"required": ["queries"]}],
        # lexical mode has no calibrated relevance to threshold
        "if": {"properties": {"mode": {"const": "lexical"}}, "required": ["mode"]},
        "then": {"properties": {"filter": {"not": {"type": "object"}}}}})

    query: QueryText = Field(None, description="One query; or use `queries`")
    queries: list[QueryText] = Field(None, min_length=1, description="A batch of queries")
    index: CleanText | None = Field(None, description="Index name (default: the first served)")
    top_k: StrictInt = Field(10, ge=1)
    mode: Literal["dense", "lexical", "hybrid"] | None = Field(
        None, description="Default: hybrid when the index has a lexical side, else dense")
    fusion: Literal["rrf", "convex", "tmm", "calibrated"] | None = Field(
        None, description="Hybrid fusion; default: the one `retriever calibrate` chose on dev (else convex)")
    where: dict[str, Any] | None = Field(
        None, description='Metadata filter, applied inside both searches: {"lang": "en", "tag": {"in": ["a", "b"]}, '
                          '"year": {"gte": 2015, "lt": 2020}, "date": {"gte": "2024-01-01"}}',
        json_schema_extra=WHERE_SCHEMA)
    filter: Literal["calibrated", "none"] | MinRelevance = "calibrated"
    rerank: StrictBool = False
    rerank_depth: StrictInt = Field(20, ge=1)
    return_text: StrictBool = True

    @model_validator(mode="after")
    def _one_of(self) -> SearchRequest:
        if (self.query is None) == (self.queries is None):
            raise ValueError("give exactly one of 'query' or 'queries'")
        if self.mode == "lexical" and isinstance(self.filter, MinRelevance):
            raise ValueError("min_relevance needs calibrated relevance, which lexical mode has none of: use "
                             "filter 'none' (or 'calibrated', which is then unfiltered)")
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


class Document(StrictModel):
    id: CleanText = Field(..., min_length=1, max_length=512, description="May contain '/'")
    title: CleanText = ""
    text: CleanText = Field(..., min_length=1)
    metadata: dict[str, Any] = Field(default_factory=dict, description="Filterable with `where` in /search")


class DocumentOut(BaseModel):
    id: str
    title: str
    text: str
    metadata: dict[str, Any] | None = Field(None, description="Present when the document has metadata")


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
