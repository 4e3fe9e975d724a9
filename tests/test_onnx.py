"""ONNX Runtime backend: export of a tiny model, parity with torch, the int8 guard, the backend in cache
namespaces and index manifests, and the refusals (soft tokens, missing or stale exports)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from retriever.errors import IndexMismatchError, ModelError
from retriever.onnx import exporter
from retriever.onnx.files import ExportedFile, ExportManifest, read_export, resolve_backend


@pytest.fixture
def model_dir(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny 2-layer model, so that its onnx/ folder belongs to one test."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


def _encoders(path: Path, cache_dir: Path):
    from retriever.encoders import EmbeddingCache, TextEncoder

    torch_enc = TextEncoder.load(str(path), cache=EmbeddingCache(cache_dir), backend="torch")
    onnx_enc = TextEncoder.load(str(path), cache=EmbeddingCache(cache_dir), backend="onnx")
    return torch_enc, onnx_enc


def test_fp32_export_matches_torch_and_has_its_own_cache_namespace(model_dir: Path, tmp_path: Path) -> None:
    [(folder, manifest)] = exporter.export_onnx(str(model_dir), guard_data=None)
    assert folder == model_dir / "onnx" and (folder / "model.onnx").is_file()
    entry = manifest.backends["onnx"]
    assert entry.passed and entry.guard["cosine_min"] >= 0.9999 and len(entry.sha256) == 64
    assert read_export(folder) == manifest

    torch_enc, onnx_enc = _encoders(model_dir, tmp_path / "cache")
    texts = ["what causes earthquakes", "plate tectonics " * 40, "x"]
    for side in ("query", "document"):
        cos = np.einsum("ij,ij->i", torch_enc.encode(texts, side=side), onnx_enc.encode(texts, side=side))
        assert cos.min() >= 0.9999
    assert onnx_enc.backend == "onnx" and onnx_enc.fingerprint == torch_enc.fingerprint
    assert torch_enc.cache_namespace("query") == f"{torch_enc.fingerprint}-query"  # the warm cache is kept
    assert onnx_enc.cache_namespace("query") == f"{torch_enc.fingerprint}-onnx-{entry.sha256[:12]}-query"
    cached = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert cached == sorted(f"{torch_enc.fingerprint}-{tail}" for tail in
                            ("query", "document", f"onnx-{entry.sha256[:12]}-query",
                             f"onnx-{entry.sha256[:12]}-document"))


def _fake_quality(values: list[float]):
    calls = iter(values)
    return lambda towers, kind, backend, dataset, split, depth=20: next(calls)


def test_int8_refused_when_it_loses_ndcg_even_with_sensitive_layers_in_fp32(model_dir: Path, tiny_dir: Path,
                                                                            monkeypatch) -> None:
    monkeypatch.setattr(exporter, "_quality", _fake_quality([0.80, 0.70, 0.79]))  # fp32, int8, int8 + fp32 layers
    with pytest.raises(ModelError, match=r"refusing int8.*loses 0\.0100 nDCG@10.*0\.7900 vs 0\.8000"):
        exporter.export_onnx(str(model_dir), quantize="int8", guard_data=str(tiny_dir), guard_split="test")
    folder = model_dir / "onnx"
    export = read_export(folder)
    int8 = export.backends["onnx-int8"]
    assert not int8.passed and "loses 0.0100" in int8.reason and not (folder / int8.file).exists()
    assert [a["ndcg@10_int8"] for a in int8.guard["attempts"]] == [0.70, 0.79]
    assert int8.guard["fp32_layers"] == 2  # the FFN down-projections of its 2 layers
    with pytest.raises(ModelError, match="failed its quality guard"):
        resolve_backend("onnx-int8", export, export.model_fingerprint, "m")
    assert resolve_backend("auto", export, export.model_fingerprint, "m") == "onnx"


def test_int8_kept_when_keeping_sensitive_layers_fp32_recovers_ndcg(model_dir: Path, tiny_dir: Path,
                                                                    monkeypatch) -> None:
    monkeypatch.setattr(exporter, "_quality", _fake_quality([0.80, 0.79, 0.797]))
    [(folder, manifest)] = exporter.export_onnx(str(model_dir), quantize="int8", guard_data=str(tiny_dir),
                                                guard_split="test")
    int8 = manifest.backends["onnx-int8"]
    assert int8.passed and int8.reason is None and (folder / int8.file).is_file()
    assert int8.guard["fp32_layers"] > 0 and int8.guard["attempts"][1]["refused"] is None
    assert resolve_backend("auto", manifest, manifest.model_fingerprint, "m") == "onnx-int8"
    from retriever.encoders import EmbeddingCache, TextEncoder

    encoder = TextEncoder.load(str(model_dir), cache=EmbeddingCache(model_dir / "c"), backend="auto")
    assert encoder.backend == "onnx-int8" and encoder.encode(["some text"]).shape == (1, 32)


def test_dense_ndcg_is_hand_computable() -> None:
    """Two queries, three documents: q1's relevant document ranks first (1.0), q2's second (1/log2(3))."""
    from retriever.onnx.guard import dense_ndcg

    class Data:
        name, doc_ids = "toy", ["d1", "d2", "d3"]

        def qrels(self, split):
            return {"q1": {"d1": 1}, "q2": {"d3": 1}}

        def split_queries(self, split):
            return {"q1": "a", "q2": "b"}

        def doc_texts(self):
            return ["d1", "d2", "d3"]

    class Encoder:
        def encode_documents(self, texts):
            return np.eye(3, dtype=np.float32)

        def encode_queries(self, texts):
            return np.array([[1.0, 0.5, 0.0], [0.0, 0.9, 0.5]], dtype=np.float32)

    assert dense_ndcg(Encoder(), Data(), "test") == pytest.approx((1.0 + 1 / np.log2(3)) / 2)


def test_resolve_backend_refuses_missing_and_stale_exports() -> None:
    with pytest.raises(ModelError, match="has no onnx export; run: retriever export onnx m$"):
        resolve_backend("onnx", None, "abc", "m")
    assert resolve_backend("auto", None, "abc", "m") == "torch"
    export = ExportManifest(kind="bi-encoder", model_fingerprint="old", max_length=64,
                            backends={"onnx": ExportedFile(file="model.onnx", passed=True)})
    with pytest.raises(ModelError, match="made from other weights"):
        resolve_backend("onnx", export, "new", "m")
    assert resolve_backend("auto", export, "new", "m") == "torch"  # stale: never served
    with pytest.raises(ModelError, match="unknown backend 'tensorrt'"):
        resolve_backend("tensorrt", export, "old", "m")


def test_a_listed_but_missing_onnx_file_is_skipped_by_auto_and_refused_by_name(tmp_path: Path, caplog) -> None:
    """export.json lists an int8 file the folder lacks (a copied or pruned folder): auto falls back to the
    next file on disk, an explicit request names the missing file instead of failing inside ONNX Runtime."""
    (tmp_path / "model_O2.onnx").write_bytes(b"x")
    export = ExportManifest(kind="bi-encoder", model_fingerprint="f", max_length=64, backends={
        "onnx": ExportedFile(file="model_O2.onnx", passed=True),
        "onnx-int8": ExportedFile(file="model_qint8_avx2.onnx", passed=True)})
    with caplog.at_level("WARNING"):
        assert resolve_backend("auto", export, "f", "m", folder=tmp_path) == "onnx"
    assert "model_qint8_avx2.onnx is missing" in caplog.text
    with pytest.raises(ModelError, match=r"lists model_qint8_avx2\.onnx, which is missing .*--quantize int8$"):
        resolve_backend("onnx-int8", export, "f", "m", folder=tmp_path)
    (tmp_path / "model_O2.onnx").unlink()
    assert resolve_backend("auto", export, "f", "m", folder=tmp_path) == "torch"
    assert resolve_backend("auto", export, "f", "m") == "onnx-int8"  # no folder given: the manifest alone


def test_index_manifest_records_the_backend_and_a_mismatch_warns(model_dir: Path, tiny_dir: Path, tmp_path: Path,
                                                                 caplog, minilm) -> None:
    from retriever.data import load_beir
    from retriever.encoders import BiEncoder, EmbeddingCache, TextEncoder
    from retriever.pipeline import build_index, open_index

    exporter.export_onnx(str(model_dir), guard_data=None)
    torch_enc, onnx_enc = _encoders(model_dir, tmp_path / "cache")
    _, manifest, _ = build_index(load_beir(tiny_dir), BiEncoder(onnx_enc), "tiny", root=tmp_path, use_gpu=False)
    assert manifest.inference_backend == "onnx"
    saved = json.loads(next((tmp_path / "tiny").glob("v*/manifest.json")).read_text())
    assert saved["inference_backend"] == "onnx" and saved["backend"] == "faiss"
    with caplog.at_level(logging.WARNING, logger="retriever.pipeline"):
        open_index(tmp_path / "tiny", BiEncoder(torch_enc), use_gpu=False)
    assert "encoded on the onnx backend; queries now run on torch" in caplog.text
    other = BiEncoder(TextEncoder(minilm, "minilm", EmbeddingCache(tmp_path / "c2")))
    with pytest.raises(IndexMismatchError):  # a different model is still refused
        open_index(tmp_path / "tiny", other, use_gpu=False)


def test_soft_token_models_are_refused(model_dir: Path, tmp_path: Path) -> None:
    from retriever.encoders import load_sentence_transformer
    from retriever.encoders.soft_tokens import add_soft_tokens

    soft = add_soft_tokens(load_sentence_transformer(str(model_dir), device="cpu"), soft_tokens=2)
    soft.save(str(tmp_path / "soft"))
    with pytest.raises(ModelError, match="soft-token models cannot be exported to ONNX"):
        exporter.export_onnx(str(tmp_path / "soft"), guard_data=None)
    assert not (tmp_path / "soft" / "onnx" / "model.onnx").exists()


def test_cross_encoder_export_scores_like_torch(tiny_model_dir: Path, tmp_path: Path) -> None:
    from sentence_transformers import CrossEncoder

    from retriever.rerank import load_reranker

    CrossEncoder(str(tiny_model_dir.parent / "hf"), num_labels=1, max_length=64).save(str(tmp_path / "ce"))
    [(folder, manifest)] = exporter.export_onnx(str(tmp_path / "ce"), guard_data=None)
    assert manifest.kind == "cross-encoder" and manifest.backends["onnx"].guard["max_abs_logit_error"] < 1e-3
    queries = ["what causes earthquakes", "q"]
    docs = ["plate tectonics " * 50, "a short document"]
    torch_scores = load_reranker(str(tmp_path / "ce"), backend="torch").score_pairs(queries, docs)
    onnx_reranker = load_reranker(str(tmp_path / "ce"), backend="onnx")
    assert onnx_reranker.backend == "onnx"
    assert onnx_reranker.onnx.small_session is None  # pairs are never short: no second session kept
    np.testing.assert_allclose(onnx_reranker.score_pairs(queries, docs), torch_scores, atol=1e-4)


def test_index_build_store_option_and_the_deprecated_backend_spelling(model_dir: Path, tiny_dir: Path,
                                                                      tmp_path: Path, caplog, monkeypatch) -> None:
    from typer.testing import CliRunner

    from retriever.cli import app
    from retriever.onnx.files import BACKEND_ENV

    monkeypatch.setenv(BACKEND_ENV, "torch")  # --backend sets it for the process: restored after the test

    runner = CliRunner()
    base = ["index", "build", "--data", str(tiny_dir), "--model", str(model_dir), "--root", str(tmp_path), "--json"]
    with caplog.at_level(logging.WARNING, logger="retriever.cli.index_commands"):
        old = runner.invoke(app, [*base, "--name", "old", "--backend", "faiss"])
    assert old.exit_code == 0, old.output
    assert "--backend faiss names a vector store: use --store faiss" in caplog.text
    new = runner.invoke(app, [*base, "--name", "new", "--store", "faiss", "--backend", "torch"])
    assert new.exit_code == 0, new.output
    info = json.loads(new.stdout[new.stdout.index("{"):])
    assert info["store"] == "faiss" and info["inference_backend"] == "torch" and info["count"] == 12
    missing = runner.invoke(app, [*base, "--name", "x", "--backend", "onnx"])  # not exported: a clear error
    assert isinstance(missing.exception, ModelError) and "has no onnx export" in str(missing.exception)
    bad = runner.invoke(app, [*base, "--name", "x", "--backend", "tensorrt"])
    assert bad.exit_code == 2 and "unknown backend 'tensorrt'" in bad.output


def test_short_inputs_run_on_a_single_threaded_session_with_identical_vectors(model_dir: Path, tmp_path: Path,
                                                                              monkeypatch) -> None:
    """Issue 18: a short query (<= 64 tokens in the batch) skips the intra-op thread pool; a batch of documents
    keeps both cores; the outputs are bitwise those of the multi-threaded session."""
    from retriever.encoders import TextEncoder

    monkeypatch.setenv("RETRIEVER_ONNX_THREADS", "2")
    exporter.export_onnx(str(model_dir), guard_data=None)
    encoder = TextEncoder.load(str(model_dir), cache=False, backend="onnx")
    onnx = encoder.onnx
    assert onnx.threads == 2 and onnx.small_tokens == 64 and onnx.small_session is not None
    calls: list[str] = []
    for name in ("session", "small_session"):
        session = getattr(onnx, name)
        monkeypatch.setattr(session, "run", lambda *a, s=session, n=name: calls.append(n) or type(s).run(s, *a))
    short, long = ["what causes earthquakes"], ["plate tectonics " * 20] * 4
    features = {k: v.numpy() for k, v in encoder.model.preprocess(short).items() if hasattr(v, "numpy")}
    assert features["input_ids"].size <= 64
    vector = encoder.encode(short, side="query")
    assert calls == ["small_session"]
    encoder.encode(long, side="document")
    assert calls == ["small_session", "session"]  # 4 x 40+ tokens: the multi-threaded session
    feed = {name: features[name] for name in onnx.inputs}
    both = [type(s).run(s, None, feed)[0] for s in (onnx.session, onnx.small_session)]
    assert np.array_equal(both[0], both[1])
    np.testing.assert_allclose(vector, both[0] / np.linalg.norm(both[0], axis=1, keepdims=True), rtol=1e-6)

    monkeypatch.setenv("RETRIEVER_ONNX_SMALL_TOKENS", "0")  # off: one session, as before
    assert TextEncoder.load(str(model_dir), cache=False, backend="onnx").onnx.small_session is None
