"""Running exported models with ONNX Runtime: sessions with one intra-op thread per core (and a single-threaded one
for short bi-encoder inputs), and length-sorted batches tokenized by the very tokenizer the torch model uses."""

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
SMALL_TOKENS_ENV = "RETRIEVER_ONNX_SMALL_TOKENS"  # bi-encoder inputs up to this many tokens run single-threaded
DEFAULT_SMALL_TOKENS = 64
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
        import onnxruntime  # optional extra (onnx)
    except ImportError:
        raise ModelError("the ONNX backends need onnxruntime and onnx: pip install 'retrieval-trainer[onnx]'") from None
    return onnxruntime


class OnnxModel:
    """ONNX Runtime on the CPU; ``run`` feeds the inputs the graph declares.

    ``small_tokens``: inputs of at most this many tokens (rows x length; one short query is ~20) run on a
    second, single-threaded session of the same graph. Splitting so little work over the cores costs more
    in thread wake-ups per operator than it saves, and far more when other processes hold the cores
    (docs/findings.md, issue 18); the outputs are bitwise the same. 0: one session for everything."""

    def __init__(self, path: Path, threads: int | None = None, sha256: str = "", small_tokens: int = 0) -> None:
        self.threads = threads or cpu_threads()
        self.session = self._open(path, self.threads)
        self.small_tokens = small_tokens if self.threads > 1 else 0
        self.small_session = self._open(path, 1) if self.small_tokens > 0 else None
        self.path = path
        self.tag = (sha256 or file_sha256(path))[:12]  # names this graph in cache namespaces
        self.inputs = [i.name for i in self.session.get_inputs()]

    @staticmethod
    def _open(path: Path, threads: int):
        ort = require_onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle ORT workers spin by default, taking the cores from FAISS and torch between calls.
        options.add_session_config_entry("session.intra_op.allow_spinning",
                                         "1" if os.environ.get(SPIN_ENV) == "1" else "0")
        try:
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # a missing or corrupt file
            raise ModelError(f"cannot load ONNX model {path}: {str(exc).splitlines()[0][:160]}") from None

    def run(self, features: dict) -> np.ndarray:
        feed = {name: np.asarray(features[name], dtype=np.int64) for name in self.inputs}
        small = self.small_session is not None and feed[self.inputs[0]].size <= self.small_tokens
        return (self.small_session if small else self.session).run(None, feed)[0]


def open_export(target: str, model_id: str, fingerprint: str, backend: str) -> tuple[str, OnnxModel | None]:
    """Resolve ``backend`` for a model and open its ONNX file; ``("torch", None)`` when torch it is."""
    folder = onnx_folder(target, model_id)
    export = read_export(folder)
    resolved = resolve_backend(backend, export, fingerprint, model_id, folder=folder)
    if resolved == "torch":
        return resolved, None
    assert export is not None
    entry = export.backends[resolved]
    small = small_tokens() if export.kind == "bi-encoder" else 0  # cross-encoder pairs are never that short
    return resolved, OnnxModel(folder / entry.file, sha256=entry.sha256, small_tokens=small)


def small_tokens() -> int:
    """``$RETRIEVER_ONNX_SMALL_TOKENS`` (0 turns the single-threaded session off), else 64."""
    value = os.environ.get(SMALL_TOKENS_ENV, "")
    return max(0, int(value)) if value.strip().isdigit() else DEFAULT_SMALL_TOKENS


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
