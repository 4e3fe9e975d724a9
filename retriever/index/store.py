"""Atomic, versioned index folders.

Layout: ``<root>/<name>/CURRENT`` names the live version folder ``<root>/<name>/<version>/`` holding
``index.faiss``, ``ids.json`` and ``manifest.json``. A save writes a hidden temporary folder, renames it
into place and only then swaps ``CURRENT`` atomically, so a crash at any point leaves the previous
version intact and loadable. A save keeps the new version and the one it replaced, nothing else.

Loading checks what it reads: ``CURRENT`` must name a version folder inside the index folder, the manifest
must parse, and the ids must match the vectors; anything else is a one-line :class:`RetrieverError`.
``fallback=True`` then tries the older versions kept on disk, newest first (logged at ERROR).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path

from retriever.atomic import atomic_write_text, fsync_dir
from retriever.errors import IndexMismatchError, IndexNotFoundError, RetrieverError
from retriever.index.backends import backend_class
from retriever.index.manifest import IndexManifest, utc_now
from retriever.index.store_api import VectorStore

logger = logging.getLogger(__name__)

INDEX_DIR_ENV = "RETRIEVER_INDEX_DIR"
KEEP_VERSIONS = 2  # the new version and the one it replaced
VERSION_NAME = re.compile(r"v\d{8}T\d{6}(\d{6})?-[0-9a-f]{6}")  # microseconds since this fix
FALLBACK_HINT = "; pass --fallback-to-previous (RETRIEVER_FALLBACK_TO_PREVIOUS=1) to serve the previous version"


def index_root() -> Path:
    return Path(os.environ.get(INDEX_DIR_ENV, "indexes"))


def resolve_index_dir(name_or_path: str | Path) -> Path:
    """An index is named (``indexes/<name>``) or given by path."""
    path = Path(name_or_path)
    if not path.is_dir() and len(path.parts) == 1:
        path = index_root() / path
    if not (path / "CURRENT").is_file() and not (path / "manifest.json").is_file():
        known = ", ".join(list_indexes()) or "none"
        raise IndexNotFoundError(f"no index '{name_or_path}' (looked in {path}; indexes in {index_root()}: {known})")
    return path


def list_indexes(root: Path | None = None) -> list[str]:
    root = root or index_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "CURRENT").is_file())


def read_current(folder: Path) -> str:
    """The version ``CURRENT`` names: a plain version folder name, never a path out of the index folder."""
    try:
        version = (folder / "CURRENT").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise RetrieverError(f"cannot read {folder / 'CURRENT'}: {exc}") from None
    if not VERSION_NAME.fullmatch(version):
        shown = version[:80] or "nothing"
        raise RetrieverError(f"{folder / 'CURRENT'} holds {shown!r}, not a version name like v20250101T120000-abc123 "
                             "(a version must be a folder inside the index folder)")
    return version


def current_version_dir(folder: Path) -> Path:
    folder = Path(folder)
    if (folder / "manifest.json").is_file():
        return folder
    version_dir = folder / read_current(folder)
    if not (version_dir / "manifest.json").is_file():
        raise RetrieverError(f"{folder / 'CURRENT'} names version {version_dir.name}, which is missing or empty"
                             + FALLBACK_HINT)
    read_manifest(version_dir)  # fail here, in one line, rather than in a caller's parse
    return version_dir


def version_dirs(folder: Path) -> list[Path]:
    """Every saved version, newest first (names sort by time)."""
    return sorted((p for p in Path(folder).iterdir() if p.is_dir() and VERSION_NAME.fullmatch(p.name)),
                  key=lambda p: p.name, reverse=True)


def index_manifest(name_or_path: str | Path) -> IndexManifest:
    """The manifest of an index's current version, without loading its vectors."""
    return read_manifest(current_version_dir(resolve_index_dir(name_or_path)))


def read_manifest(version_dir: Path) -> IndexManifest:
    try:
        return IndexManifest.model_validate_json((version_dir / "manifest.json").read_bytes())
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise RetrieverError(f"manifest of {version_dir} is unreadable ({first})" + FALLBACK_HINT) from None


def save_index(
    index: VectorStore, manifest: IndexManifest, folder: Path, extra_files: dict[str, bytes] | None = None
) -> Path:
    """Write a new version of the index (plus ``extra_files``, e.g. an adapter) atomically; returns its folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    version = datetime.now(timezone.utc).strftime("v%Y%m%dT%H%M%S%f") + "-" + uuid.uuid4().hex[:6]
    previous = (folder / "CURRENT").read_text().strip() if (folder / "CURRENT").is_file() else None
    tmp = folder / f".tmp-{version}"
    manifest = manifest.model_copy(
        update={"version": version, "count": len(index), "updated_at": utc_now(), "index_spec": index.spec}
    )
    try:
        tmp.mkdir()
        options = index.persist(tmp)
        manifest = manifest.model_copy(update={"backend": index.backend, "backend_options": options})
        (tmp / "manifest.json").write_text(manifest.model_dump_json(indent=2))
        for name, data in (extra_files or {}).items():
            (tmp / name).write_bytes(data)
        for child in tmp.iterdir():
            with open(child, "rb") as handle:
                os.fsync(handle.fileno())
        fsync_dir(tmp)
        os.rename(tmp, folder / version)
        fsync_dir(folder)
        atomic_write_text(folder / "CURRENT", version + "\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _prune(folder, keep={version, previous})
    logger.info("saved %d vectors to %s", len(index), folder / version)
    return folder / version


def _prune(folder: Path, keep: set[str | None]) -> None:
    """Drop interrupted saves and every version but ``keep`` (the new one and the one it replaced); names
    alone cannot tell two versions saved in the same second apart, so nothing here sorts them."""
    for stale in folder.glob(".tmp-*"):  # left by a process killed mid-save
        shutil.rmtree(stale, ignore_errors=True)
    for old in version_dirs(folder):
        if old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)


def load_index(
    name_or_path: str | Path,
    model_fingerprint: str | None = None,
    dimension: int | None = None,
    use_gpu: bool = True,
) -> tuple[VectorStore, IndexManifest]:
    """Load the live version; refuse an index built with another model or dimension."""
    version_dir = current_version_dir(resolve_index_dir(name_or_path))
    manifest = read_manifest(version_dir)
    try:
        index = backend_class(manifest.backend).restore(version_dir, manifest.index_spec, manifest.backend_options,
                                                        use_gpu=use_gpu)
    except (OSError, ValueError, RuntimeError) as exc:
        raise RetrieverError(f"index at {version_dir} is unreadable: {str(exc).splitlines()[0][:160]}"
                             + FALLBACK_HINT) from None
    _check_counts(index, manifest, version_dir)
    if dimension is not None and dimension != manifest.dimension:
        raise IndexMismatchError(
            f"index '{manifest.name}' has dimension {manifest.dimension} but the encoder gives {dimension}"
        )
    if model_fingerprint is not None and model_fingerprint != manifest.model_fingerprint:
        raise IndexMismatchError(
            f"index '{manifest.name}' was built with model {manifest.model_id} "
            f"(fingerprint {manifest.model_fingerprint}), not with the encoder in use "
            f"(fingerprint {model_fingerprint}); rebuild the index or pass the matching --model"
        )
    return index, manifest


def _check_counts(index: VectorStore, manifest: IndexManifest, version_dir: Path) -> None:
    """A FAISS version's ids.json must name each vector exactly once (a short one would serve duplicates)."""
    if index.backend != "faiss":
        return
    if not (len(index.ids) == len(index) == manifest.count):
        raise RetrieverError(f"index at {version_dir} is inconsistent: {len(index)} vectors, {len(index.ids)} "
                             f"distinct ids, manifest count {manifest.count}" + FALLBACK_HINT)
