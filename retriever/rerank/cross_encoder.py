"""Cross-encoder reranking with sentence-transformers' ``CrossEncoder``, or its ONNX export."""

from __future__ import annotations

import numpy as np
import torch
from sentence_transformers import CrossEncoder

from retriever.encoders import model_fingerprint
from retriever.errors import ModelError
from retriever.onnx.files import check_backend_name, default_backend
from retriever.onnx.runtime import open_export, score_onnx
from retriever.rerank.base import length_sorted_batches, read_settings


class CrossEncoderReranker:
    """Scores pairs with a ``CrossEncoder`` folder: batched by length, truncated to ``max_length`` (default:
    the length ``retriever train-reranker`` trained it with, else the model's limit), bf16 on CUDA. Scores are
    the model's raw logits (a sigmoid gives probabilities for BCE-trained heads). ``backend`` onnx or
    onnx-int8 runs the graph ``retriever export onnx`` wrote (auto: the fastest that passed its guard)."""

    def __init__(self, path: str, batch_size: int = 64, max_length: int | None = None,
                 device: str | None = None, backend: str | None = None) -> None:
        backend = check_backend_name(backend or default_backend())
        max_length = max_length or read_settings(path).get("max_length")  # the length it was trained with
        try:
            kwargs = {"max_length": max_length} if max_length else {}
            self.model = CrossEncoder(path, device=device, activation_fn=torch.nn.Identity(), **kwargs)
        except Exception as exc:  # missing files, bad config: one clear line
            raise ModelError(f"cannot load reranker '{path}': {str(exc).splitlines()[0][:160]}") from None
        if self.model.device.type == "cuda" and torch.cuda.is_bf16_supported():
            self.model.bfloat16()
        self.model.eval()
        self.onnx = None
        if backend != "torch" and not (backend == "auto" and self.model.device.type != "cpu"):
            backend, self.onnx = open_export(path, path, model_fingerprint(self.model.model), backend)
        self.backend = backend if self.onnx is not None else "torch"
        self.name = f"cross-encoder:{path}"
        self.batch_size = batch_size

    def score_pairs(self, queries: list[str], documents: list[str]) -> np.ndarray:
        if len(queries) != len(documents):
            raise ValueError("queries and documents must have the same length")
        if self.onnx is not None:
            return score_onnx(self.model.tokenizer, self.onnx, queries, documents, self.model.max_length,
                              self.batch_size)
        scores = np.zeros(len(queries), dtype=np.float32)
        lengths = np.array([len(q) + len(d) for q, d in zip(queries, documents, strict=True)])
        for rows in length_sorted_batches(lengths, self.batch_size):
            pairs = [(queries[i], documents[i]) for i in rows]
            out = self.model.predict(pairs, batch_size=len(pairs), show_progress_bar=False, convert_to_numpy=True)
            scores[rows] = np.asarray(out, dtype=np.float32).reshape(len(rows), -1)[:, -1]
        return scores
