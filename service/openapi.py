"""The published OpenAPI schema, made to say what the service does.

Error bodies are ``ErrorResponse`` (``detail`` is a string; a 422 adds ``errors``), and the limits from the
settings (``max_top_k``, ``max_batch`` ...) appear as ``maximum`` / ``maxItems`` / ``maxLength``, so a client
or a fuzzer can tell a valid request from one the service will refuse. Limits that span fields
(``queries x top_k``, ``title + text``, the body size) stay documented 413s.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from service.schemas import ErrorResponse, ValidationErrorResponse
from service.settings import Settings


def error_responses(auth: bool) -> dict[int | str, dict[str, Any]]:
    responses: dict[int | str, dict[str, Any]] = {
        400: {"model": ErrorResponse, "description": "The body cannot be read (not UTF-8)"},
        404: {"model": ErrorResponse, "description": "Unknown index or document"},
        409: {"model": ErrorResponse, "description": "The index does not fit the request (model, adapter)"},
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


def install_openapi(app: FastAPI, settings: Settings) -> None:
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = apply_limits(build(), settings)
        return app.openapi_schema

    app.openapi = openapi
