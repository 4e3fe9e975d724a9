"""OpenAI's ``POST /v1/embeddings``, ``GET /v1/models`` and ``GET /v1/models/{id}``.

Inputs are encoded by the document tower (``input_type: "query"`` picks the query tower), cut at the model's
token limit as sentence-transformers does; ``usage`` counts the tokens the model read, special tokens included.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from service.compat_schemas import (
    OpenAIEmbedding,
    OpenAIEmbeddingRequest,
    OpenAIEmbeddingResponse,
    OpenAIModel,
    OpenAIModelList,
    OpenAIUsage,
)
from service.deps import get_runtime
from service.routes.embed import check_inputs, fit_to_model
from service.runtime import Runtime
from service.served import created_at, resolve_index
from service.tokens import EncoderTokens, in_model_thread
from service.vectors import check_dimensions, encode, to_base64, truncate

router = APIRouter(tags=["openai"])


def _texts(view: EncoderTokens, value) -> list[str]:
    """The request's ``input`` as texts (the schema has refused empty or blank ones): token-id lists are
    decoded with the model's tokenizer (ids of special tokens only decode to an empty text, which is embedded)."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value[0], int):
        value = [value]
    return [item if isinstance(item, str) else view.decode(item, f"input[{i}]") for i, item in enumerate(value)]


@router.post("/v1/embeddings", response_model=OpenAIEmbeddingResponse)
async def embeddings(request: OpenAIEmbeddingRequest,
                     runtime: Runtime = Depends(get_runtime)) -> OpenAIEmbeddingResponse:
    """OpenAI-compatible embeddings."""
    live = resolve_index(runtime, request.model)
    side = "query" if request.input_type == "query" else "document"
    encoder = live.encoder.query if side == "query" else live.encoder.document
    dims = check_dimensions(encoder, request.dimensions, "dimensions")
    view = EncoderTokens.of(encoder)
    texts = await in_model_thread(runtime, _texts, view, request.input)
    check_inputs(runtime, texts, side, "input")
    texts, counts = await in_model_thread(runtime, lambda: fit_to_model(
        view, texts, allow=True, side="right", hint="", what="input"))
    vectors = truncate(await encode(runtime, encoder, texts, side), dims)
    as_text = request.encoding_format == "base64"
    return OpenAIEmbeddingResponse(
        data=[OpenAIEmbedding(index=i, embedding=to_base64(v) if as_text else v.tolist())
              for i, v in enumerate(vectors)],
        model=live.name, usage=OpenAIUsage(prompt_tokens=sum(counts), total_tokens=sum(counts)))


def _models(runtime: Runtime) -> list[OpenAIModel]:
    runtime.get(None)  # 503 while loading
    return [OpenAIModel(id=live.name, created=created_at(live)) for live in runtime.indexes.values()]


@router.get("/v1/models", response_model=OpenAIModelList)
async def models(runtime: Runtime = Depends(get_runtime)) -> OpenAIModelList:
    """The served embedding models: one per index, named by the index (its model ids are aliases)."""
    return OpenAIModelList(data=_models(runtime))


@router.get("/v1/models/{model:path}", response_model=OpenAIModel)
async def retrieve_model(model: str, runtime: Runtime = Depends(get_runtime)) -> OpenAIModel:
    live = resolve_index(runtime, model)
    return OpenAIModel(id=live.name, created=created_at(live))

