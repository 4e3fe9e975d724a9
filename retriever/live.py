"""A served index: FAISS index, encoder, calibrated relevance and the durable document store, kept in step."""

from __future__ import annotations

import logging
from pathlib import Path

from retriever.data import load_beir
from retriever.docstore import COMPLETE, STORE_FILE, DocumentStore
from retriever.encoders import BiEncoder
from retriever.errors import DataError
from retriever.filtering import RelevanceModel, load_relevance_model
from retriever.filtering.store import save_with_adapter
from retriever.index import FaissIndex, IndexManifest, save_index
from retriever.index.store import resolve_index_dir
from retriever.pipeline import open_index

logger = logging.getLogger(__name__)

__all__ = ["COMPLETE", "STORE_FILE", "LiveIndex"]


class LiveIndex:
    def __init__(self, folder: Path, index: FaissIndex, manifest: IndexManifest, encoder: BiEncoder,
                 store: DocumentStore, relevance: RelevanceModel | None) -> None:
        self.folder, self.index, self.manifest = folder, index, manifest
        self.encoder, self.store, self.relevance = encoder, store, relevance

    @property
    def name(self) -> str:
        return self.manifest.name

    @classmethod
    def open(cls, name_or_path: str | Path, encoder: BiEncoder | None = None, use_gpu: bool = True) -> LiveIndex:
        folder = resolve_index_dir(name_or_path)
        index, manifest, encoder = open_index(folder, encoder, use_gpu=use_gpu)
        live = cls(folder, index, manifest, encoder, DocumentStore(folder / STORE_FILE),
                   load_relevance_model(folder, manifest))
        live._import_source_texts()
        live.reconcile()
        return live

    def _import_source_texts(self) -> None:
        """Fill an empty store from the dataset the index was built from, once."""
        if self.store.get_meta(COMPLETE) or self.manifest.data_source is None:
            return
        try:
            dataset = load_beir(self.manifest.data_source.path)
        except (DataError, OSError) as exc:
            logger.warning("texts of %s are unavailable (%s); search returns ids and scores", self.name, exc)
            return
        known = self.index.ids
        self.store.upsert((d, doc["title"], doc["text"]) for d, doc in dataset.corpus.items() if d in known)
        self.store.set_meta(COMPLETE, "1")

    def reconcile(self) -> None:
        """Index what the store holds but the index lacks (a write acknowledged before a crash), and, when
        the store is complete, drop what the index holds but the store does not (a delete)."""
        stored, indexed = self.store.ids(), self.index.ids
        missing = sorted(stored - indexed)
        extra = sorted(indexed - stored) if self.store.get_meta(COMPLETE) else []
        if missing:
            texts = self.store.get(missing)
            self.index.add(missing, self.encoder.encode_documents([f"{t} {x}".strip() for t, x in
                                                                   (texts[d] for d in missing)]))
        if extra:
            self.index.remove(extra)
        if missing or extra:
            logger.info("reconciled %s with its store: +%d -%d documents", self.name, len(missing), len(extra))
            self.save()

    @property
    def has_lexical(self) -> bool:
        return self.store.has_lexical

    def upsert(self, docs: list[tuple], vectors=None) -> None:
        """``(id, title, text[, metadata])`` rows. Durable first (one store commit: text, metadata and the
        lexical postings together), then the vector index; the caller acknowledges after this returns."""
        if vectors is None:
            vectors = self.encoder.encode_documents([f"{doc[1]} {doc[2]}".strip() for doc in docs])
        self.store.upsert(docs)
        self.index.add([doc[0] for doc in docs], vectors)

    def delete(self, ids: list[str]) -> int:
        """Index first (it may refuse, e.g. HNSW), then the store (text and lexical postings in one commit);
        a crash between the two is undone by :meth:`reconcile`, which re-adds what the store still holds."""
        self.index.remove(ids)
        return self.store.delete(ids)

    def texts(self, ids: list[str]) -> dict[str, tuple[str, str]]:
        return self.store.get(ids)

    def save(self) -> Path:
        if self.relevance is not None:
            info = {k: v for k, v in self.relevance.info.items() if k not in ("dimension", "mapping", "hidden", "file")}
            path = save_with_adapter(self.index, self.manifest, self.relevance.adapter, info, self.folder)
        else:
            path = save_index(self.index, self.manifest, self.folder)
        self.manifest = self.manifest.model_copy(update={"version": path.name, "count": len(self.index)})
        return path

    def close(self) -> None:
        self.store.close()

