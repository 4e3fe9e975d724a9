"""Running exported models with ONNX Runtime: sessions with one intra-op thread per core, and length-sorted
batches tokenized by the very tokenizer the torch model uses."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from retriever.errors import ModelError
from retriever.onnx.files import ExportManifest, file_sha256, onnx_folder, read_export, resolve_backend
from retriever.rerank.base import length_sorted_batches

THREADS_ENV = "RETRIEVER_ONNX_THREADS"
SPIN_ENV = "RETRIEVER_ONNX_SPIN"  # 1: idle intra-op workers spin (ORT's default); off here, see OnnxModel
DOCUMENT_PROMPTS = ("document", "passage", "corpus")


def cpu_threads() -> int:
    """Intra-op threads: ``$RETRIEVER_ONNX_THREADS``, else the cores this process may run on."""
    if os.environ.get(THREADS_ENV):
        return max(1, int(os.environ[THREADS_ENV]))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def require_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise ModelError("the ONNX backends need onnxruntime and onnx: pip install 'retrieval-trainer[onnx]'") from None
    return onnxruntime


class OnnxModel:
    """One ONNX Runtime session on the CPU; ``run`` feeds the inputs the graph declares."""

    def __init__(self, path: Path, threads: int | None = None, sha256: str = "") -> None:
        ort = require_onnxruntime()

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or cpu_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle ORT workers spin by default, taking the cores from FAISS and torch between calls.
        options.add_session_config_entry("session.intra_op.allow_spinning",
                                         "1" if os.environ.get(SPIN_ENV) == "1" else "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # a missing or corrupt file
            raise ModelError(f"cannot load ONNX model {path}: {str(exc).splitlines()[0][:160]}") from None
        self.path = path
        self.tag = (sha256 or file_sha256(path))[:12]  # names this graph in cache namespaces
        self.inputs = [i.name for i in self.session.get_inputs()]

    def run(self, features: dict) -> np.ndarray:
        feed = {name: np.asarray(features[name], dtype=np.int64) for name in self.inputs}
        return self.session.run(None, feed)[0]


def open_export(target: str, model_id: str, fingerprint: str, backend: str) -> tuple[str, OnnxModel | None]:
    """Resolve ``backend`` for a model and open its ONNX file; ``("torch", None)`` when torch it is."""
    folder = onnx_folder(target, model_id)
    export = read_export(folder)
    resolved = resolve_backend(backend, export, fingerprint, model_id)
    if resolved == "torch":
        return resolved, None
    assert export is not None
    entry = export.backends[resolved]
    return resolved, OnnxModel(folder / entry.file, sha256=entry.sha256)


def export_of(target: str, model_id: str) -> ExportManifest | None:
    return read_export(onnx_folder(target, model_id))


def side_prompt(model, side: str) -> str:
    """The prompt sentence-transformers' ``encode_query`` / ``encode_document`` would prepend."""
    prompts = getattr(model, "prompts", None) or {}
    names = ("query",) if side == "query" else DOCUMENT_PROMPTS
    return next((prompts[n] for n in names if n in prompts), "")


def encode_onnx(model, onnx: OnnxModel, texts: list[str], side: str, batch_size: int,
                show_progress: bool = False) -> np.ndarray:
    """Sentence embeddings (the graph includes pooling and normalisation) of ``texts``, longest first in
    batches of similar length, scattered back to input order."""
    prompt = side_prompt(model, side)
    texts = [prompt + t for t in texts] if prompt else texts
    out: np.ndarray | None = None
    batches = list(length_sorted_batches(np.array([len(t) for t in texts]), batch_size))
    for rows in tqdm(batches, desc=f"onnx encode ({side})", disable=not show_progress):
        features = model.preprocess([texts[i] for i in rows])
        vectors = onnx.run({k: v.numpy() for k, v in features.items() if hasattr(v, "numpy")})
        if out is None:
            out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
        out[rows] = vectors
    assert out is not None
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.ascontiguousarray(out / np.maximum(norms, 1e-12), dtype=np.float32)


def score_onnx(tokenizer, onnx: OnnxModel, queries: list[str], documents: list[str], max_length: int,
               batch_size: int) -> np.ndarray:
    """Cross-encoder logits (last column) of (query, document) pairs, in length-sorted batches."""
    scores = np.zeros(len(queries), dtype=np.float32)
    lengths = np.array([len(q) + len(d) for q, d in zip(queries, documents, strict=True)])
    for rows in length_sorted_batches(lengths, batch_size):
        features = tokenizer([queries[i] for i in rows], [documents[i] for i in rows], padding=True,
                             truncation="longest_first", max_length=max_length, return_tensors="np")
        logits = onnx.run(features)
        scores[rows] = logits.reshape(len(rows), -1)[:, -1]
    return scores
