from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException

from service.deps import check_texts, get_runtime
from service.runtime import Runtime
from service.schemas import (
    EmbedRequest,
    EmbedResponse,
    OpenAIEmbedding,
    OpenAIEmbeddingRequest,
    OpenAIEmbeddingResponse,
)

router = APIRouter(tags=["embed"])


def _texts(inputs: str | list[str]) -> list[str]:
    texts = [inputs] if isinstance(inputs, str) else list(inputs)
    if not texts or any(not t.strip() for t in texts):
        raise HTTPException(422, "inputs must be a non-empty text or a non-empty list of non-empty texts")
    return texts


@router.post("/embed", response_model=EmbedResponse)
async def embed(request: EmbedRequest, runtime: Runtime = Depends(get_runtime)) -> EmbedResponse:
    """Normalised embeddings from the index's query (default) or document encoder."""
    texts = _texts(request.inputs)
    check_texts(runtime, texts, "inputs")
    live = runtime.get(request.index)
    encoder = live.encoder.query if request.kind == "query" else live.encoder.document
    vectors = await runtime.encode(encoder, texts, request.kind)
    return EmbedResponse(model=encoder.model_id, embeddings=vectors.tolist())


@router.post("/v1/embeddings", response_model=OpenAIEmbeddingResponse)
async def openai_embeddings(request: OpenAIEmbeddingRequest,
                            runtime: Runtime = Depends(get_runtime)) -> OpenAIEmbeddingResponse:
    """OpenAI-compatible embeddings (inputs are encoded as documents, as OpenAI clients expect)."""
    texts = _texts(request.input)
    check_texts(runtime, texts, "inputs")
    live = runtime.get(None)
    vectors = await runtime.encode(live.encoder.document, texts, "document")
    tokens = sum(len(t.split()) for t in texts)
    return OpenAIEmbeddingResponse(
        data=[OpenAIEmbedding(index=i, embedding=v) for i, v in enumerate(vectors.tolist())],
        model=request.model or live.encoder.document.model_id,
        usage={"prompt_tokens": tokens, "total_tokens": tokens},
    )
