"""Where a model's ONNX files live, what ``export.json`` records about them, and which backend to run.

Layout (sentence-transformers'): ``<model>/onnx/model.onnx`` (fp32), ``model_O2.onnx`` (fp32 with fused
attention, LayerNorm and GELU, from ``--optimize``), ``model_qint8_<isa>.onnx`` (dynamic int8) and
``export.json``: per backend, the file, its sha256 and the guard it passed or failed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from retriever.errors import ModelError

ONNX_DIR_ENV = "RETRIEVER_ONNX_DIR"
BACKEND_ENV = "RETRIEVER_BACKEND"
EXPORT_FILE = "export.json"
BACKENDS = ("torch", "onnx", "onnx-int8")
logger = logging.getLogger(__name__)
FASTEST_FIRST = ("onnx-int8", "onnx")  # what "auto" tries, in order, before torch


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ExportedFile(BaseModel):
    file: str
    sha256: str = ""
    passed: bool
    guard: dict = Field(default_factory=dict)
    reason: str | None = None  # why the guard refused it


class ExportManifest(BaseModel):
    kind: Literal["bi-encoder", "cross-encoder"]
    model_fingerprint: str
    max_length: int
    backends: dict[str, ExportedFile] = Field(default_factory=dict)
    created_at: str = Field(default_factory=utc_now)


def onnx_folder(model_path: str | Path, name: str | None = None) -> Path:
    """``<model folder>/onnx`` for a writable model folder; for the packaged default model, hub ids and
    read-only folders ``$RETRIEVER_ONNX_DIR/<name>/onnx`` (default ``~/.cache/retriever/onnx``)."""
    path = Path(model_path)
    if path.is_dir() and "site-packages" not in path.resolve().parts and os.access(path, os.W_OK):
        return path / "onnx"
    root = Path(os.environ.get(ONNX_DIR_ENV, Path.home() / ".cache" / "retriever" / "onnx"))
    return root / re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name or path).strip("/")) / "onnx"


def read_export(folder: Path) -> ExportManifest | None:
    file = folder / EXPORT_FILE
    if not file.is_file():
        return None
    return ExportManifest.model_validate_json(file.read_text())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_backend() -> str:
    return os.environ.get(BACKEND_ENV, "torch")


def check_backend_name(name: str) -> str:
    if name not in (*BACKENDS, "auto"):
        raise ModelError(f"unknown backend '{name}' (torch, onnx, onnx-int8 or auto)")
    return name


def resolve_backend(requested: str, export: ExportManifest | None, fingerprint: str, model: str,
                    folder: Path | None = None) -> str:
    """The backend to run: ``auto`` is the fastest one that passed its guard, else torch. An explicit ONNX
    backend must have been exported and guarded for exactly these weights. With ``folder`` (the export's
    folder), a file that ``export.json`` lists but the folder lacks (a copied or pruned folder) is skipped by
    ``auto`` and refused by name when asked for."""
    check_backend_name(requested)
    if requested == "torch":
        return "torch"
    stale = export is not None and export.model_fingerprint != fingerprint

    def on_disk(backend: str) -> bool:
        return folder is None or (folder / export.backends[backend].file).is_file()

    if requested == "auto":
        if export is None or stale:
            return "torch"
        usable = [b for b in FASTEST_FIRST if b in export.backends and export.backends[b].passed]
        for backend in usable:
            if on_disk(backend):
                return backend
            logger.warning("the %s export of '%s' is listed in export.json but %s is missing; skipping it",
                           backend, model, export.backends[backend].file)
        return "torch"
    hint = f"run: retriever export onnx {model}" + (" --quantize int8" if requested == "onnx-int8" else "")
    if export is None or requested not in export.backends:
        raise ModelError(f"model '{model}' has no {requested} export; {hint}")
    if stale:
        raise ModelError(f"the ONNX export of '{model}' was made from other weights; {hint}")
    entry = export.backends[requested]
    if not entry.passed:
        raise ModelError(f"the {requested} export of '{model}' failed its quality guard ({entry.reason})")
    if not on_disk(requested):
        raise ModelError(f"the {requested} export of '{model}' lists {entry.file}, which is missing from "
                         f"{folder}; {hint}")
    return requested


def int8_isa() -> str:
    """The instruction set dynamic int8 runs on with this CPU, in sentence-transformers' naming:
    ``avx512_vnni``, ``avx512``, ``arm64`` or ``avx2``."""
    flags = ""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        pass
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags:
        return "avx512"
    if os.uname().machine in ("arm64", "aarch64"):
        return "arm64"
    return "avx2"


def int8_file_name() -> str:
    """sentence-transformers' names for dynamic int8 files, after the instruction set they target."""
    return f"model_qint8_{int8_isa()}.onnx"
