"""A served index: FAISS index, encoder, calibrated relevance and the durable document store, kept in step."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from retriever.atomic import atomic_write_text
from retriever.data import load_beir
from retriever.docstore import COMPLETE, STORE_FILE, DocumentStore
from retriever.encoders import BiEncoder
from retriever.errors import DataError, IndexMismatchError, RetrieverError
from retriever.filtering import RelevanceModel, load_relevance_model
from retriever.filtering.store import save_with_adapter
from retriever.index import IndexManifest, VectorStore, save_index
from retriever.index.store import current_version_dir, read_current, resolve_index_dir, version_dirs
from retriever.pipeline import open_index
from retriever.types import doc_text

logger = logging.getLogger(__name__)

__all__ = ["COMPLETE", "STORE_FILE", "LiveIndex"]


class LiveIndex:
    def __init__(self, folder: Path, index: VectorStore, manifest: IndexManifest, encoder: BiEncoder,
                 store: DocumentStore, relevance: RelevanceModel | None) -> None:
        self.folder, self.index, self.manifest = folder, index, manifest
        self.encoder, self.store, self.relevance = encoder, store, relevance

    @property
    def name(self) -> str:
        return self.manifest.name

    @classmethod
    def open(cls, name_or_path: str | Path, encoder: BiEncoder | None = None, use_gpu: bool = True,
             fallback: bool = False, store: DocumentStore | None = None, lexical_snapshot: bool = True) -> LiveIndex:
        """Open the current version (or, with ``fallback``, the newest one that loads) with its store;
        ``store``: the open store of the same folder, shared with the index this one replaces;
        ``lexical_snapshot``: lexical passes from a numpy snapshot of the postings (see DocumentStore)."""
        folder = resolve_index_dir(name_or_path)
        index, manifest, encoder = _open_version(folder, encoder, use_gpu, fallback)
        path = folder / STORE_FILE
        try:
            live = cls(folder, index, manifest, encoder, store or DocumentStore(path, snapshot=lexical_snapshot),
                       load_relevance_model(folder, manifest))
            live._import_source_texts()
            live.reconcile()
            if store is None and lexical_snapshot and live.store.has_lexical:  # numpy passes from the start
                live.store.refresh_lexical_snapshot()
        except sqlite3.DatabaseError as exc:
            logger.error("document store %s is damaged: %s", path, exc)
            raise RetrieverError(f"the document store {path} is damaged ({exc}): restore it from a backup; "
                                 "it holds the texts of every acknowledged write") from None
        return live

    def _import_source_texts(self) -> None:
        """Fill an empty store from the dataset the index was built from, once. Refuse when the index holds
        documents the dataset lacks: they came through the API, their texts were in the store, and
        completing the store without them would delete them."""
        if self.store.get_meta(COMPLETE) or self.manifest.data_source is None:
            return
        try:
            dataset = load_beir(self.manifest.data_source.path)
        except (DataError, OSError) as exc:
            logger.warning("texts of %s are unavailable (%s); search returns ids and scores", self.name, exc)
            return
        known = self.index.ids
        lost = known - set(dataset.corpus) - self.store.ids()
        if lost:
            message = (f"index '{self.name}': its document store {self.store.path} is missing or incomplete, and "
                       f"{len(lost)} indexed documents (e.g. {sorted(lost)[0]!r}) are not in its dataset "
                       f"{self.manifest.data_source.path}: they were written through the API. Starting would "
                       "drop them; restore docs.sqlite from a backup (nothing was changed)")
            logger.error(message)
            raise RetrieverError(message)
        self.store.upsert((d, doc["title"], doc["text"]) for d, doc in dataset.corpus.items() if d in known)
        self.store.set_meta(COMPLETE, "1")

    def reconcile(self) -> None:
        """Index what the store holds but the index lacks (a write acknowledged before a crash), and, when
        the store is complete, drop what the index holds but the store does not (a delete)."""
        stored, indexed = self.store.ids(), self.index.ids
        missing = sorted(stored - indexed)
        extra = sorted(indexed - stored) if self.store.get_meta(COMPLETE) else []
        if missing:
            texts, metadata = self.store.get(missing), self.store.metadata(missing)
            self.index.add(missing, self.encoder.encode_documents([doc_text(*texts[d]) for d in missing]),
                           documents=[(d, *texts[d], metadata[d]) for d in missing])
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
            vectors = self.encoder.encode_documents([doc_text(doc[1], doc[2]) for doc in docs])
        self.store.upsert(docs)
        self.index.add([doc[0] for doc in docs], vectors, documents=docs)

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



def _open_version(folder: Path, encoder: BiEncoder | None, use_gpu: bool, fallback: bool):
    """The current version; with ``fallback``, else the newest older one that loads, which then becomes
    current (the damaged one stays on disk until the next save prunes it)."""
    if not fallback:
        return open_index(current_version_dir(folder), encoder, use_gpu=use_gpu)
    errors, candidates = [], version_dirs(folder)
    try:
        current = folder / read_current(folder)
        candidates = [current] + [v for v in candidates if v != current]  # CURRENT first, then newest first
    except RetrieverError as exc:
        errors.append(str(exc))
    for version_dir in candidates:
        try:
            opened = open_index(version_dir, encoder, use_gpu=use_gpu)
        except IndexMismatchError:
            raise
        except RetrieverError as exc:
            errors.append(str(exc))
            continue
        if errors:
            logger.error("index %s: the newer version(s) are damaged (%s); serving %s and making it current",
                         folder.name, "; ".join(errors), version_dir.name)
            atomic_write_text(folder / "CURRENT", version_dir.name + "\n")
        return opened
    raise RetrieverError(f"no version of the index at {folder} loads: " + ("; ".join(errors) or "none saved"))
