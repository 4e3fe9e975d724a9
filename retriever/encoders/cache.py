"""On-disk embedding cache keyed by model fingerprint, text side (query or document) and text hash."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np

from retriever.atomic import atomic_write_bytes, file_lock

logger = logging.getLogger(__name__)

CACHE_ENV = "RETRIEVER_CACHE_DIR"
KEY_BYTES = 20  # sha1


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "retriever")) / "embeddings"


def text_keys(texts: list[str]) -> list[bytes]:
    """sha1 of each text's UTF-8; a lone surrogate (not encodable) hashes as its code point (surrogatepass),
    so hashing never raises and valid texts keep the keys they always had."""
    return [hashlib.sha1(t.encode("utf-8", "surrogatepass")).digest() for t in texts]


class _Table:
    """Row ``i`` of ``vectors`` belongs to ``keys[i]``; ``rows`` maps a key to its row."""

    def __init__(self, keys: list[bytes], vectors: np.ndarray) -> None:
        self.keys = keys
        self.vectors = vectors
        self.rows = {k: i for i, k in enumerate(keys)}


class EmbeddingCache:
    """One table per (fingerprint, side), stored as ``keys.npy`` (n x 20 bytes) and ``vectors.npy``.

    Several processes may share a cache folder (two trainings, a bench beside a CLI run): a write holds the
    table's file lock and merges what is on disk with its own rows, so no process drops another's vectors,
    and a read holds the lock shared, so it never pairs one writer's keys with another's vectors."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root else default_cache_dir()
        self._tables: dict[str, _Table] = {}
        self._lock = threading.Lock()

    def _table(self, namespace: str) -> _Table:
        if namespace not in self._tables:
            folder = self.root / namespace
            if folder.is_dir():
                with _file_lock(folder, exclusive=False):
                    self._tables[namespace] = _read_table(folder)
            else:
                self._tables[namespace] = _Table([], np.zeros((0, 0), dtype=np.float32))
        return self._tables[namespace]

    def lookup(self, namespace: str, keys: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(rows, hit_mask)``: the cached row of each key (-1 if absent)."""
        with self._lock:
            rows_of = self._table(namespace).rows
            rows = np.fromiter((rows_of.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
        return rows, rows >= 0

    def vectors(self, namespace: str) -> np.ndarray:
        return self._table(namespace).vectors

    def add(self, namespace: str, keys: list[bytes], vectors: np.ndarray) -> None:
        """Append the vectors of keys not cached yet to the table on disk (as it is now, whoever wrote it),
        then persist it atomically."""
        with self._lock:
            known = self._table(namespace)
            first: dict[bytes, int] = {}
            for i, key in enumerate(keys):
                if key not in known.rows:
                    first.setdefault(key, i)
            if not first:
                return
            folder = self.root / namespace
            with _file_lock(folder, exclusive=True):
                table = _merged(_read_table(folder), known, list(first),
                                np.asarray(vectors, dtype=np.float32)[list(first.values())])
                raw = np.frombuffer(b"".join(table.keys), dtype=np.uint8).reshape(-1, KEY_BYTES)
                atomic_write_bytes(folder / "vectors.npy", _npy_bytes(table.vectors))
                atomic_write_bytes(folder / "keys.npy", _npy_bytes(raw))
            self._tables[namespace] = table


@contextmanager
def _file_lock(folder: Path, exclusive: bool) -> Iterator[None]:
    """The table's lock (``folder/.lock``), which other processes' caches respect. A reader of a cache it
    may not write (a read-only mount) reads without it."""
    with ExitStack() as stack:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            stack.enter_context(file_lock(folder / ".lock", exclusive))
        except OSError:
            if exclusive:
                raise
        yield


def _read_table(folder: Path) -> _Table:
    """The table on disk; empty when absent, and (with a warning) when unreadable."""
    try:
        raw = np.load(folder / "keys.npy")
        vectors = np.load(folder / "vectors.npy")
        keys = [row.tobytes() for row in raw.reshape(-1, KEY_BYTES)]
        if len(keys) != len(vectors) or len(set(keys)) != len(keys):
            raise ValueError("keys and vectors do not match")
        return _Table(keys, vectors)
    except FileNotFoundError:
        pass
    except (ValueError, OSError) as exc:
        logger.warning("ignoring unreadable embedding cache %s (%s)", folder, exc)
    return _Table([], np.zeros((0, 0), dtype=np.float32))


def _merged(disk: _Table, memory: _Table, new_keys: list[bytes], new_vectors: np.ndarray) -> _Table:
    """``disk`` plus the rows of ``memory`` and the new ones that it lacks, in that order."""
    extra_rows = [i for i, key in enumerate(memory.keys) if key not in disk.rows]
    keys = disk.keys + [memory.keys[i] for i in extra_rows]
    parts = [disk.vectors] if disk.keys else []
    if extra_rows:
        parts.append(memory.vectors[extra_rows])
    seen = set(keys)
    fresh = [i for i, key in enumerate(new_keys) if key not in seen]
    keys += [new_keys[i] for i in fresh]
    parts.append(new_vectors[fresh])
    return _Table(keys, np.concatenate(parts) if len(parts) > 1 else parts[0])


class VectorLRU:
    """In-memory least-recently-used vectors keyed by ``(namespace, text key)``: what a server keeps instead of
    the on-disk cache, whose ``add`` rewrites a whole table (the service must never do that per request).
    ``capacity`` 0 keeps nothing."""

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = max(0, int(capacity))
        self._items: OrderedDict[tuple[str, bytes], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, namespace: str, keys: list[bytes]) -> list[np.ndarray | None]:
        with self._lock:
            found = [self._items.get((namespace, k)) for k in keys]
            for key, vector in zip(keys, found, strict=True):
                if vector is not None:
                    self._items.move_to_end((namespace, key))
        return found

    def put(self, namespace: str, keys: list[bytes], vectors: np.ndarray) -> None:
        if not self.capacity:
            return
        with self._lock:
            for key, vector in zip(keys, vectors, strict=True):
                self._items[(namespace, key)] = vector
                self._items.move_to_end((namespace, key))
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()
