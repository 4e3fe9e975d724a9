from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query

from retriever.types import doc_text
from service.deps import get_runtime, too_large
from service.metrics import Timer
from service.runtime import Runtime
from service.schemas import DeleteResponse, DocumentOut, UpsertRequest, UpsertResponse

router = APIRouter(tags=["documents"])
# ``:path``: an id may contain "/" (a client sends it as is or as %2F); the schema still names it {doc_id}.
DOCUMENT_PATH = "/documents/{doc_id:path}"


@router.post("/documents", response_model=UpsertResponse)
async def upsert_documents(request: UpsertRequest, runtime: Runtime = Depends(get_runtime)) -> UpsertResponse:
    """Insert or replace a batch. The reply comes after the texts are committed to the store and the
    index is updated and saved: an acknowledged write survives a kill -9."""
    s = runtime.settings
    too_large("number of documents", len(request.documents), s.max_batch, "max_batch")
    too_large("longest document (characters)", max(len(d.title) + len(d.text) for d in request.documents),
              s.max_document_chars, "max_document_chars")
    ids = [d.id for d in request.documents]
    if len(set(ids)) != len(ids):
        raise HTTPException(409, "duplicate document ids in one batch")  # valid JSON, conflicting content
    live = runtime.get(request.index)
    docs = [(d.id, d.title, d.text, d.metadata) for d in request.documents]
    timer = Timer(runtime.metrics)
    with timer.stage("encode"):
        vectors = await runtime.encode(live.encoder.document, [doc_text(d[1], d[2]) for d in docs], "document")

    def write() -> int:
        current = runtime.get(request.index)  # a reload may have swapped the object meanwhile
        current.upsert(docs, vectors)
        current.save()
        return len(current.index)

    with timer.stage("write"):
        count = await runtime.in_index_thread(write)
    runtime.metrics.index_size.labels(live.name).set(count)
    return UpsertResponse(index=live.name, upserted=len(docs), count=count)


@router.get(DOCUMENT_PATH, response_model=DocumentOut, response_model_exclude_none=True)
async def get_document(doc_id: str, index: str | None = Query(None),
                       runtime: Runtime = Depends(get_runtime)) -> DocumentOut:
    live = runtime.get(index)
    found = await runtime.in_index_thread(live.store.metadata, [doc_id])
    if doc_id not in found:
        raise HTTPException(404, f"no document '{doc_id}' in index '{live.name}'")
    (title, text), metadata = (await runtime.in_index_thread(live.texts, [doc_id]))[doc_id], found[doc_id]
    return DocumentOut(id=doc_id, title=title, text=text, metadata=metadata or None)


@router.delete(DOCUMENT_PATH, response_model=DeleteResponse)
async def delete_document(doc_id: str, index: str | None = Query(None),
                          runtime: Runtime = Depends(get_runtime)) -> DeleteResponse:
    live = runtime.get(index)

    def remove() -> tuple[int, int]:
        current = runtime.get(index)
        if doc_id not in current.index:
            return 0, len(current.index)
        current.delete([doc_id])
        current.save()
        return 1, len(current.index)

    deleted, count = await runtime.in_index_thread(remove)
    if not deleted:
        raise HTTPException(404, f"no document '{doc_id}' in index '{live.name}'")
    runtime.metrics.index_size.labels(live.name).set(count)
    return DeleteResponse(index=live.name, deleted=doc_id, count=count)
