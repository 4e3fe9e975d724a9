"""TEI's ``POST /embed``: a bare list of vectors, with TEI's ``normalize``, ``truncate``,
``truncation_direction`` and ``dimensions``, plus our ``kind`` (which tower) and ``index`` (which model)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from service.compat_schemas import EmbedRequest
from service.deps import get_runtime, too_large
from service.runtime import Runtime
from service.tokens import EncoderTokens, fit, in_model_thread, token_spans
from service.vectors import check_dimensions, encode, truncate

router = APIRouter(tags=["embed"])


def check_inputs(runtime: Runtime, texts: list[str], side: str, what: str) -> None:
    """413 past the batch limit, or past the character limit of the side (queries or documents)."""
    s = runtime.settings
    too_large(f"number of {what}", len(texts), s.max_batch, "max_batch")
    limit, setting = (s.max_query_chars, "max_query_chars") if side == "query" else (s.max_document_chars,
                                                                                      "max_document_chars")
    too_large(f"longest of the {what} (characters)", max(map(len, texts), default=0), limit, setting)


def fit_to_model(view: EncoderTokens, texts: list[str], *, allow: bool, side: str, hint: str,
                 what: str, budget: int | None = None) -> tuple[list[str], list[int]]:
    """Texts within the model's token limit (or a smaller ``budget``) and the tokens the model reads of each:
    a 413 for a too long text unless ``allow``, else cut on ``side`` (ST itself cuts the right at its limit)."""
    spans = token_spans(view.tokenizer, texts)
    limit = min(view.budget, budget or view.budget)
    if not allow:
        view.check_length(spans, what, hint, limit)
    if any(len(s) > limit for s in spans) and (side == "left" or limit < view.budget):
        texts = fit(texts, spans, limit, side)
    return texts, [min(len(s), limit) + view.specials for s in spans]


@router.post("/embed", response_model=list[list[float]])
@router.post("/", response_model=list[list[float]], summary="Embed (TEI's root route, as /embed)")
async def embed(request: EmbedRequest, runtime: Runtime = Depends(get_runtime)) -> list[list[float]]:
    """TEI-compatible embeddings from the index's query (default) or document tower."""
    texts = [request.inputs] if isinstance(request.inputs, str) else list(request.inputs)  # non-blank: schema
    check_inputs(runtime, texts, request.kind, "inputs")
    live = runtime.get(request.index)
    encoder = live.encoder.query if request.kind == "query" else live.encoder.document
    dims = check_dimensions(encoder, request.dimensions, "dimensions")
    view = EncoderTokens.of(encoder)
    texts, _ = await in_model_thread(runtime, lambda: fit_to_model(
        view, texts, allow=request.truncate, side=request.truncation_direction.lower(),
        hint="send truncate: true to cut it", what="inputs"))
    vectors = await encode(runtime, encoder, texts, request.kind, normalize=request.normalize)
    return truncate(vectors, dims, request.normalize).tolist()
