"""The published OpenAPI schema, made to say what the service does.

Error bodies are ``ErrorResponse`` (``detail`` is a string; a 422 adds ``errors``), and the limits from the
settings (``max_top_k``, ``max_batch`` ...) appear as ``maximum`` / ``maxItems`` / ``maxLength``, so a client
or a fuzzer can tell a valid request from one the service will refuse. Limits that span fields
(``queries x top_k``, ``title + text``, the body size) stay documented 413s.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from service.api_errors import api_of
from service.schemas import (
    CohereErrorResponse,
    ErrorResponse,
    OpenAIErrorResponse,
    TEIErrorResponse,
    TEIValidationErrorResponse,
    ValidationErrorResponse,
)
from service.settings import Settings
from service.vectors import matryoshka_dims

# The error body of each API (service/api_errors.py builds them): (any error, a validation error)
ERROR_MODELS = {"openai": (OpenAIErrorResponse, OpenAIErrorResponse), "cohere": (CohereErrorResponse,
                CohereErrorResponse), "tei": (TEIErrorResponse, TEIValidationErrorResponse)}


def error_responses(auth: bool) -> dict[int | str, dict[str, Any]]:
    responses: dict[int | str, dict[str, Any]] = {
        400: {"model": ErrorResponse, "description": "The body cannot be read (not UTF-8)"},
        404: {"model": ErrorResponse, "description": "Unknown index or document"},
        409: {"model": ErrorResponse, "description": "The index lacks what the request needs"},
        413: {"model": ErrorResponse, "description": "Over a size limit (RETRIEVER_MAX_*)"},
        422: {"model": ValidationErrorResponse, "description": "Invalid request"},
        503: {"model": ErrorResponse, "description": "Still loading"},
    }
    if auth:
        responses[401] = {"model": ErrorResponse, "description": "Missing or invalid API key"}
    return responses


def _limits(settings: Settings) -> dict[str, dict[str, dict[str, int]]]:
    """``{schema: {property: {keyword: value}}}``; ``items.`` patches an array's items."""
    text = {"maxLength": settings.max_query_chars}
    return {
        "SearchRequest": {
            "query": text,
            "queries": {"maxItems": settings.max_batch},
            "items.queries": text,
            "top_k": {"maximum": settings.max_top_k},
            "rerank_depth": {"maximum": settings.max_rerank_documents},
        },
        "UpsertRequest": {"documents": {"maxItems": settings.max_batch}},
        "Document": {"text": {"maxLength": settings.max_document_chars},
                     "title": {"maxLength": settings.max_document_chars}},
    }


def apply_limits(schema: dict, settings: Settings) -> dict:
    components = schema.get("components", {}).get("schemas", {})
    for name, properties in _limits(settings).items():
        for prop, keywords in properties.items():
            target = components.get(name, {}).get("properties", {})
            if prop.startswith("items."):
                target = target.get(prop.removeprefix("items."), {}).get("items")
            else:
                target = target.get(prop)
            if target is not None:
                target.update(keywords)
    return schema


def _ref(model) -> dict:
    return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}


def api_error_shapes(schema: dict) -> dict:
    """Each path's error responses in the shape its API answers with; OpenAI and Cohere answer a 422 as 400."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for path, operations in schema.get("paths", {}).items():
        api = api_of(path)
        if api not in ERROR_MODELS:
            continue
        error, invalid = ERROR_MODELS[api]
        for operation in operations.values():
            responses = operation.get("responses", {})
            if api != "tei" and "422" in responses:
                responses.pop("422")
                responses["400"] = {"description": "Invalid request, or the body cannot be read (not UTF-8)"}
            for status, response in responses.items():
                if status[0] in "45":
                    response.update(_ref(invalid if status == "422" else error))
    for model in {m for pair in ERROR_MODELS.values() for m in pair}:
        definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(definition.pop("$defs", {}))
        components[model.__name__] = definition
    return schema


def _encoders(runtime) -> list:
    return [e for live in runtime.indexes.values() for e in (live.encoder.query, live.encoder.document)]


def _integer_branch(prop: dict) -> dict | None:
    return next((b for b in [prop, *prop.get("anyOf", [])] if b.get("type") == "integer"), None)


def model_limits(schema: dict, runtime) -> dict:
    """What the served models accept: the output sizes (full or Matryoshka) as ``enum`` and token ids up to
    the largest vocabulary. With several models the schema gives the union; the ``model`` a request names
    may still refuse another model's size or ids (a 400 naming them)."""
    encoders = _encoders(runtime)
    sizes = sorted({e.dimension for e in encoders} | {d for e in encoders for d in matryoshka_dims(e.model_id)})
    components = schema.get("components", {}).get("schemas", {})
    for name, prop in (("EmbedRequest", "dimensions"), ("OpenAIEmbeddingRequest", "dimensions"),
                       ("CohereEmbedV2Request", "output_dimension")):
        branch = _integer_branch(components.get(name, {}).get("properties", {}).get(prop, {}))
        if branch is not None:
            branch["enum"] = sizes
    vocab = max(len(e.model.tokenizer) for e in encoders)
    stack = [components.get("OpenAIEmbeddingRequest", {}).get("properties", {}).get("input", {})]
    while stack:  # every integer (a token id) inside `input`
        node = stack.pop()
        if node.get("type") == "integer":
            node["maximum"] = vocab - 1
        stack += node.get("anyOf", []) + ([node["items"]] if isinstance(node.get("items"), dict) else [])
    return schema


def install_openapi(app: FastAPI, settings: Settings, runtime) -> None:
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = api_error_shapes(apply_limits(build(), settings))
            if not runtime.indexes:  # still loading: the models' limits are not known yet; build it again later
                app.openapi_schema = None
                return schema
            app.openapi_schema = model_limits(schema, runtime)
        return app.openapi_schema

    app.openapi = openapi
