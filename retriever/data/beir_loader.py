"""Load and validate a dataset in the BEIR layout.

``corpus.jsonl`` holds ``{"_id", "title", "text"}``, ``queries.jsonl`` holds ``{"_id", "text"}`` and
``qrels/<split>.tsv`` holds ``query-id<TAB>corpus-id<TAB>score``. A document's ``metadata`` object is kept
apart from its text (for metadata filters; never encoded); a query's ``metadata`` is never read: in SciFact
it holds the gold labels and must never reach a model.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from retriever.data.splits import held_out_split
from retriever.errors import DataError
from retriever.types import Qrels, doc_text

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")


@dataclass
class BeirDataset:
    """A corpus, its queries and the qrels of each split, validated."""

    name: str
    path: Path
    corpus: dict[str, dict[str, str]]
    queries: dict[str, str]
    file_qrels: dict[str, Qrels]
    warnings: list[str] = field(default_factory=list)
    dev_fraction: float = 0.1
    dev_seed: int = 42
    doc_metadata: dict[str, dict] = field(default_factory=dict)  # non-empty corpus metadata objects only

    @property
    def doc_ids(self) -> list[str]:
        return list(self.corpus)

    def doc_texts(self, ids: list[str] | None = None) -> list[str]:
        """Document texts as encoders see them: ``title + " " + text``, stripped."""
        ids = self.doc_ids if ids is None else ids
        return [corpus_text(self.corpus[i]) for i in ids]

    @property
    def splits(self) -> list[str]:
        names = set(self.file_qrels)
        if "train" in names:
            names.add("dev")
        return [s for s in SPLITS if s in names]

    @cached_property
    def _derived_train_dev(self) -> tuple[Qrels, Qrels]:
        return held_out_split(self.file_qrels["train"], fraction=self.dev_fraction, seed=self.dev_seed)

    @property
    def dev_is_derived(self) -> bool:
        return "dev" not in self.file_qrels and "train" in self.file_qrels

    def qrels(self, split: str) -> Qrels:
        """Qrels of a split. Without a dev file, dev is a seeded held-out part of train, and train loses it."""
        if split not in self.splits:
            raise DataError(f"dataset '{self.name}' has no split '{split}' (available: {', '.join(self.splits)})")
        if self.dev_is_derived and split in ("train", "dev"):
            train, dev = self._derived_train_dev
            return train if split == "train" else dev
        return self.file_qrels[split]

    def split_queries(self, split: str) -> dict[str, str]:
        """The queries that have qrels in ``split``, in qrels order."""
        return {qid: self.queries[qid] for qid in self.qrels(split)}

    @cached_property
    def content_hash(self) -> str:
        """sha256 over the corpus file, the data source recorded in index manifests."""
        digest = hashlib.sha256()
        with open(self.path / "corpus.jsonl", "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()


def corpus_text(doc: dict[str, str]) -> str:
    """A corpus entry's encoder text (see :func:`retriever.types.doc_text`)."""
    return doc_text(doc.get("title"), doc.get("text"))


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)``; a broken line fails with file and line number."""
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(obj, dict) or "_id" not in obj:
                raise DataError(f"{path}:{lineno}: expected a JSON object with an '_id' key")
            yield lineno, obj


def read_qrels(path: Path) -> Qrels:
    """Read a qrels TSV (header optional) into ``{query_id: {doc_id: score}}``."""
    qrels: Qrels = {}
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line or (lineno == 1 and line.startswith("query-id")):
                continue
            parts = line.split("\t")
            if len(parts) != 3:
                raise DataError(f"{path}:{lineno}: expected 3 tab-separated columns, got {len(parts)}")
            qid, did, score = parts
            try:
                qrels.setdefault(qid, {})[did] = int(float(score))
            except ValueError:
                raise DataError(f"{path}:{lineno}: score '{score}' is not a number") from None
    return qrels


def load_beir(path: Path | str, name: str | None = None, strict: bool = False) -> BeirDataset:
    """Load a BEIR folder. Unknown ids in qrels are counted and reported (or raise when ``strict``)."""
    path = Path(path)
    for required in ("corpus.jsonl", "queries.jsonl"):
        if not (path / required).is_file():
            raise DataError(f"{path} is not a BEIR dataset: {required} is missing")
    warnings: list[str] = []

    corpus: dict[str, dict[str, str]] = {}
    doc_metadata: dict[str, dict] = {}
    for _, obj in read_jsonl(path / "corpus.jsonl"):
        corpus[str(obj["_id"])] = {"title": str(obj.get("title") or ""), "text": str(obj.get("text") or "")}
        if isinstance(obj.get("metadata"), dict) and obj["metadata"]:
            doc_metadata[str(obj["_id"])] = obj["metadata"]
    queries = {str(obj["_id"]): str(obj.get("text") or "") for _, obj in read_jsonl(path / "queries.jsonl")}

    empty_docs = sum(1 for d in corpus.values() if not corpus_text(d))
    empty_queries = sum(1 for t in queries.values() if not t.strip())
    if empty_docs:
        warnings.append(f"{empty_docs} documents have an empty title and text")
    if empty_queries:
        warnings.append(f"{empty_queries} queries have an empty text")

    file_qrels: dict[str, Qrels] = {}
    for split in SPLITS:
        qrels_path = path / "qrels" / f"{split}.tsv"
        if qrels_path.is_file():
            file_qrels[split] = _check_qrels(read_qrels(qrels_path), qrels_path, corpus, queries, warnings, strict)
    if not file_qrels:
        raise DataError(f"{path} has no qrels/{{train,dev,test}}.tsv")

    for message in warnings:
        logger.warning("%s: %s", path.name, message)
    return BeirDataset(name or path.name, path, corpus, queries, file_qrels, warnings, doc_metadata=doc_metadata)


def _check_qrels(
    qrels: Qrels, path: Path, corpus: dict, queries: dict, warnings: list[str], strict: bool
) -> Qrels:
    unknown_queries = sum(len(docs) for qid, docs in qrels.items() if qid not in queries)
    unknown_docs = sum(1 for qid, docs in qrels.items() if qid in queries for did in docs if did not in corpus)
    if not (unknown_queries or unknown_docs):
        return qrels
    message = (
        f"{path}: {unknown_queries} rows name an unknown query and {unknown_docs} rows name an unknown "
        "document; those rows are left out"
    )
    if strict:
        raise DataError(message)
    warnings.append(message)
    cleaned = {
        qid: {did: score for did, score in docs.items() if did in corpus}
        for qid, docs in qrels.items()
        if qid in queries
    }
    return {qid: docs for qid, docs in cleaned.items() if docs}
