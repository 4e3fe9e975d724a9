"""``retriever export onnx``: export a bi-encoder (each tower) or a cross-encoder, run the guards, and
record in ``onnx/export.json`` which backends passed. A refused int8 file is deleted, never served."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from retriever.data import load_dataset
from retriever.encoders import BiEncoder, EmbeddingCache
from retriever.encoders.bi_encoder import load_towers
from retriever.encoders.text_encoder import (
    TextEncoder,
    load_sentence_transformer,
    model_fingerprint,
    resolve_model_path,
)
from retriever.errors import ModelError
from retriever.onnx import export as ex
from retriever.onnx import guard
from retriever.onnx.files import EXPORT_FILE, ExportedFile, ExportManifest, file_sha256, int8_file_name, onnx_folder
from retriever.onnx.runtime import OnnxModel, require_onnxruntime
from retriever.rerank.base import read_settings
from retriever.rerank.loading import reranker_arch

logger = logging.getLogger(__name__)


@dataclass
class Tower:
    """One model being exported: where its files go and what has been written so far."""

    model: object
    folder: Path
    manifest: ExportManifest
    fp32: Path | None = None

    def record(self, backend: str, path: Path, passed: bool, checks: dict, reason: str | None = None) -> None:
        sha = file_sha256(path) if path.is_file() else ""
        self.manifest.backends[backend] = ExportedFile(file=path.name, sha256=sha, passed=passed, guard=checks,
                                                       reason=reason)

    def save(self) -> None:
        (self.folder / EXPORT_FILE).write_text(self.manifest.model_dump_json(indent=2))


def model_kind(path: str) -> str:
    """``bi-encoder`` for sentence-transformers folders, asymmetric towers and the default model;
    ``cross-encoder`` for sequence-classification folders; refuses causal LMs."""
    target, _ = resolve_model_path(path)
    folder = Path(target)
    if (folder / "towers.json").is_file() or not folder.is_dir():
        return "bi-encoder"
    if reranker_arch(target) == "causal-lm":
        raise ModelError("causal-LM rerankers have no ONNX export here; use --backend torch")
    config = folder / "config.json"
    architectures = json.loads(config.read_text()).get("architectures") or [] if config.is_file() else []
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return "cross-encoder"
    if (folder / "modules.json").is_file():
        return "bi-encoder"
    raise ModelError(f"'{path}' is neither a sentence-transformers model nor a cross-encoder folder")


def _tower_paths(path: str) -> list[str]:
    target, _ = resolve_model_path(path)
    towers = load_towers(target) if Path(target).is_dir() else None
    return [path] if towers is None else list(dict.fromkeys([towers[1], towers[0]]))  # document tower first


def _export_fp32(tower: Tower, kind: str, optimize: bool, sample: tuple[list[str], list[str]]) -> None:
    export = ex.export_sentence_transformer if kind == "bi-encoder" else ex.export_cross_encoder
    plain = export(tower.model, tower.folder)
    config = tower.model[0].model.config if kind == "bi-encoder" else tower.model.model.config
    tower.fp32 = ex.optimize(plain, config) if optimize else plain
    onnx = OnnxModel(tower.fp32)
    parity = (guard.encoder_parity if kind == "bi-encoder" else guard.cross_encoder_parity)(tower.model, onnx,
                                                                                          *sample)
    reason = guard.fp32_verdict(kind, parity)
    tower.record("onnx", tower.fp32, reason is None, parity, reason)
    logger.info("fp32 %s: %s", tower.fp32.name, parity)
    if reason:
        tower.save()
        raise ModelError(f"refusing the fp32 export of {tower.folder.parent}: {reason}")


def _quality(towers: list[Tower], kind: str, backend: str, dataset, split: str, depth: int = 20) -> float:
    """nDCG@10 on the guard split with every tower on ``backend``'s file."""
    entries = [t.manifest.backends[backend] for t in towers]
    models = [OnnxModel(t.folder / e.file, sha256=e.sha256) for t, e in zip(towers, entries, strict=True)]
    if kind == "cross-encoder":
        return guard.rerank_ndcg(towers[0].model, models[0], dataset, split, depth)

    cache = EmbeddingCache()  # the shared one: later evaluations on this backend reuse the guard's vectors
    encoders = []
    for tower, onnx in zip(towers, models, strict=True):
        encoder = TextEncoder(tower.model, str(tower.folder.parent), cache, onnx=onnx, backend=backend,
                              show_progress=True)
        encoder._fingerprint = tower.manifest.model_fingerprint
        encoders.append(encoder)
    return guard.dense_ndcg(BiEncoder(encoders[-1], encoders[0]), dataset, split)


def _guard_int8(towers: list[Tower], kind: str, dataset, split: str, depth: int) -> dict:
    """Quantize every tower; keep int8 if nDCG@10 holds, else retry with the sensitive layers in fp32,
    else refuse (the int8 files are deleted)."""
    fp32_ndcg = _quality(towers, kind, "onnx", dataset, split, depth)
    target = int8_file_name()
    attempts: list[dict] = []
    for keep_fp32 in (False, True):
        for tower in towers:
            exclude = ex.sensitive_nodes(tower.fp32) if keep_fp32 else []
            path = ex.quantize_int8(tower.fp32, tower.folder / target, exclude)
            tower.record("onnx-int8", path, False, {"fp32_layers": len(exclude)})
        int8_ndcg = _quality(towers, kind, "onnx-int8", dataset, split, depth)
        reason = guard.int8_verdict(fp32_ndcg, int8_ndcg)
        attempts.append({"sensitive_layers_fp32": keep_fp32, "ndcg@10_int8": int8_ndcg, "refused": reason})
        logger.info("int8 (sensitive layers in fp32: %s): nDCG@10 %.4f vs fp32 %.4f", keep_fp32, int8_ndcg,
                    fp32_ndcg)
        if reason is None:
            break
    checks = {"dataset": dataset.name, "split": split, "ndcg@10_fp32": fp32_ndcg, "attempts": attempts}
    if kind == "cross-encoder":
        checks["first_stage"] = f"bm25 top {depth}"
    for tower in towers:
        entry = tower.manifest.backends["onnx-int8"]
        checks_t = checks | {"fp32_layers": entry.guard["fp32_layers"]}
        if reason:
            (tower.folder / target).unlink(missing_ok=True)
        tower.manifest.backends["onnx-int8"] = entry.model_copy(update={"passed": reason is None,
                                                                        "guard": checks_t, "reason": reason})
    return {"passed": reason is None, "reason": reason, **checks}


def export_onnx(model: str, quantize: str | None = None, optimize: bool = False, guard_data: str | None = "scifact",
                guard_split: str = "dev", kind: str = "auto",
                guard_depth: int = 20) -> list[tuple[Path, ExportManifest]]:
    """Export ``model`` and guard every backend; returns each tower's ONNX folder and export manifest. A
    cross-encoder's int8 guard reranks BM25's top ``guard_depth`` of each guard query."""
    require_onnxruntime()
    if quantize not in (None, "int8"):
        raise ModelError(f"unknown quantization '{quantize}' (int8)")
    kind = model_kind(model) if kind == "auto" else kind
    dataset = load_dataset(guard_data) if guard_data else None
    if quantize and dataset is None:
        raise ModelError("int8 needs a guard dataset (--guard-data) to prove it keeps nDCG@10; refusing int8")
    sample = guard.sample_texts(dataset)
    towers = [_open_tower(path, kind) for path in (_tower_paths(model) if kind == "bi-encoder" else [model])]
    for tower in towers:
        _export_fp32(tower, kind, optimize, sample)
        tower.save()
    if quantize:
        verdict = _guard_int8(towers, kind, dataset, guard_split, guard_depth)
        for tower in towers:
            tower.save()
        if not verdict["passed"]:
            raise ModelError(f"refusing int8 for '{model}': {verdict['reason']}; fp32 ONNX was kept")
    return [(t.folder, t.manifest) for t in towers]


def _open_tower(path: str, kind: str) -> Tower:
    target, model_id = resolve_model_path(path)
    if kind == "bi-encoder":
        model = load_sentence_transformer(path, device="cpu")
        ex.refuse_unsupported(model)
        max_length = int(model.max_seq_length or 512)
        fingerprint = model_fingerprint(model)
    else:
        from sentence_transformers import CrossEncoder  # CLI start-up: `retriever --help` loads no transformers

        settings = read_settings(target)
        model = CrossEncoder(target, device="cpu", **({"max_length": settings["max_length"]}
                                                       if settings.get("max_length") else {}))
        max_length, fingerprint = int(model.max_length), model_fingerprint(model.model)
    folder = onnx_folder(target, model_id)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = ExportManifest(kind=kind, model_fingerprint=fingerprint, max_length=max_length)
    return Tower(model, folder, manifest)
