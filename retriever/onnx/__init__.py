"""ONNX Runtime backends (fp32 and dynamic int8) for bi-encoders and cross-encoders: export, guards, running."""

from retriever.onnx.files import BACKENDS, default_backend, onnx_folder, read_export, resolve_backend

__all__ = ["BACKENDS", "default_backend", "onnx_folder", "read_export", "resolve_backend"]
