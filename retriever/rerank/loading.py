"""Open a reranker folder of any architecture in :data:`~retriever.rerank.registry.ARCHITECTURES`."""

from __future__ import annotations

from retriever.errors import ModelError
from retriever.onnx.files import check_backend_name, default_backend
from retriever.rerank.registry import architecture, reranker_arch

__all__ = ["load_reranker", "reranker_arch"]


def load_reranker(path: str, batch_size: int | None = None, max_length: int | None = None, device: str | None = None,
                  backend: str | None = None):
    """The reranker the CLI, the evaluation and the service all use. ``backend`` (torch, onnx, onnx-int8,
    auto; default ``$RETRIEVER_BACKEND``) applies to the architectures that have an ONNX export
    (cross-encoders); the others always run on torch."""
    if not path:
        raise ModelError("no reranker path given")
    backend = check_backend_name(backend or default_backend())
    name = reranker_arch(path)
    arch = architecture(name)
    if not arch.onnx and backend in ("onnx", "onnx-int8"):
        raise ModelError(f"the {backend} backend covers cross-encoders only; run {name} rerankers on torch")
    cls = arch.load_class()
    if arch.onnx:
        return cls(path, batch_size or arch.batch_size, max_length, device, backend)
    return cls(path, batch_size or arch.batch_size, max_length, device)
