"""On-disk embedding cache keyed by model fingerprint, text side (query or document) and text hash."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path

import numpy as np

from retriever.atomic import atomic_write_bytes

logger = logging.getLogger(__name__)

CACHE_ENV = "RETRIEVER_CACHE_DIR"


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "retriever")) / "embeddings"


def text_keys(texts: list[str]) -> list[bytes]:
    return [hashlib.sha1(t.encode("utf-8")).digest() for t in texts]


class EmbeddingCache:
    """One table of vectors per (fingerprint, side), stored as two ``.npy`` files and rewritten atomically."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root else default_cache_dir()
        self._tables: dict[str, tuple[dict[bytes, int], np.ndarray]] = {}
        self._lock = threading.Lock()

    def _folder(self, namespace: str) -> Path:
        return self.root / namespace

    def _table(self, namespace: str) -> tuple[dict[bytes, int], np.ndarray]:
        if namespace not in self._tables:
            folder = self._folder(namespace)
            try:
                keys = np.load(folder / "keys.npy")
                vectors = np.load(folder / "vectors.npy")
                if len(keys) != len(vectors):
                    raise ValueError("keys and vectors differ in length")
                index = {bytes(k): i for i, k in enumerate(keys)}
            except FileNotFoundError:
                index, vectors = {}, np.zeros((0, 0), dtype=np.float32)
            except (ValueError, OSError) as exc:
                logger.warning("ignoring unreadable embedding cache %s (%s)", folder, exc)
                index, vectors = {}, np.zeros((0, 0), dtype=np.float32)
            self._tables[namespace] = (index, vectors)
        return self._tables[namespace]

    def lookup(self, namespace: str, keys: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(rows, hit_mask)``: the cached row of each key, and which keys were found."""
        with self._lock:
            index, _ = self._table(namespace)
            rows = np.fromiter((index.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
        return rows, rows >= 0

    def vectors(self, namespace: str) -> np.ndarray:
        return self._table(namespace)[1]

    def add(self, namespace: str, keys: list[bytes], vectors: np.ndarray) -> None:
        """Append new vectors and persist the table atomically."""
        if not keys:
            return
        with self._lock:
            index, old = self._table(namespace)
            first = {k: i for i, k in reversed(list(enumerate(keys))) if k not in index}
            fresh = list(first.items())
            if not fresh:
                return
            new_keys, positions = zip(*fresh, strict=True)
            added = vectors[list(positions)].astype(np.float32)
            merged = added if old.size == 0 else np.concatenate([old, added])
            index.update({key: len(old) + offset for offset, key in enumerate(new_keys)})
            self._tables[namespace] = (index, merged)
            all_keys = np.empty(len(index), dtype="S20")
            all_keys[list(index.values())] = list(index.keys())
            folder = self._folder(namespace)
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(folder / "vectors.npy", _npy_bytes(merged))
            atomic_write_bytes(folder / "keys.npy", _npy_bytes(all_keys))


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()
