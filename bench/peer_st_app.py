"""The hand-wired peer: plain sentence-transformers calls inside a minimal FastAPI app, no batching."""

from __future__ import annotations

import os

from fastapi import FastAPI
from pydantic import BaseModel
from sentence_transformers import CrossEncoder, SentenceTransformer

model = SentenceTransformer(os.environ["PEER_MODEL"], device="cpu")
reranker = CrossEncoder(os.environ["PEER_RERANKER"], device="cpu")
app = FastAPI()


class EmbedIn(BaseModel):
    inputs: list[str]


class RerankIn(BaseModel):
    query: str
    documents: list[str]


@app.get("/health")
def health() -> dict:
    return {"ok": True}


@app.post("/embed")
def embed(body: EmbedIn) -> dict:
    return {"embeddings": model.encode(body.inputs, normalize_embeddings=True).tolist()}


@app.post("/rerank")
def rerank(body: RerankIn) -> dict:
    scores = reranker.predict([(body.query, d) for d in body.documents]).tolist()
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return {"results": [{"index": i, "relevance_score": scores[i]} for i in order]}
