import faiss
import numpy as np
import pytest

from retriever.errors import IndexMismatchError, IndexNotFoundError, RetrieverError
from retriever.index import FaissIndex, IndexManifest, load_index, save_index


def unit(rng: np.random.Generator, n: int, d: int = 16) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def manifest(d: int = 16) -> IndexManifest:
    return IndexManifest(name="t", model_id="m", model_fingerprint="fp", dimension=d)


def test_flat_search_is_exact_with_string_ids() -> None:
    rng = np.random.default_rng(0)
    docs, queries = unit(rng, 50), unit(rng, 4)
    index = FaissIndex.create(16, use_gpu=False)
    index.add([f"doc-{i}" for i in range(50)], docs)
    result = index.search(queries, 5)
    expected = np.argsort(-queries @ docs.T, axis=1)[:, :5]
    assert result.ids == [[f"doc-{i}" for i in row] for row in expected]
    np.testing.assert_allclose(result.scores[0], np.sort(queries[0] @ docs.T)[::-1][:5], rtol=1e-5)


def test_upsert_remove_and_k_larger_than_index() -> None:
    rng = np.random.default_rng(1)
    vectors = unit(rng, 3)
    index = FaissIndex.create(16, use_gpu=False)
    index.add(["a", "b", "c"], vectors)
    index.add(["b"], vectors[[0]])  # replace b's vector with a's
    assert len(index) == 3
    hits = index.search(vectors[[0]], 10)
    assert set(hits.ids[0][:2]) == {"a", "b"} and len(hits.ids[0]) == 3
    assert index.remove(["a", "zzz"]) == 1
    assert "a" not in index and len(index) == 2
    assert "a" not in index.search(vectors[[0]], 10).ids[0]


def test_bad_input_is_a_clear_error() -> None:
    index = FaissIndex.create(16, use_gpu=False)
    with pytest.raises(RetrieverError, match="shape"):
        index.add(["a"], np.zeros((1, 8), dtype=np.float32))
    with pytest.raises(RetrieverError, match="duplicate"):
        index.add(["a", "a"], np.zeros((2, 16), dtype=np.float32))
    with pytest.raises(RetrieverError, match="invalid FAISS index spec"):
        FaissIndex.create(16, "NotAnIndex")


def test_hnsw_refuses_removal_and_ivf_trains_itself() -> None:
    rng = np.random.default_rng(2)
    hnsw = FaissIndex.create(16, "HNSW16", use_gpu=False)
    hnsw.add([str(i) for i in range(20)], unit(rng, 20))
    with pytest.raises(RetrieverError, match="does not support removing"):
        hnsw.remove(["3"])
    ivf = FaissIndex.create(16, "IVF4,Flat", use_gpu=False)
    ivf.add([str(i) for i in range(200)], unit(rng, 200))
    assert len(ivf) == 200 and len(ivf.search(unit(rng, 1), 3).ids[0]) == 3


def test_save_load_gives_same_results(tmp_path) -> None:
    rng = np.random.default_rng(3)
    docs, queries = unit(rng, 40), unit(rng, 5)
    index = FaissIndex.create(16, use_gpu=False)
    index.add([f"d{i}" for i in range(40)], docs)
    index.remove(["d7"])
    save_index(index, manifest(), tmp_path / "idx")
    loaded, meta = load_index(tmp_path / "idx", use_gpu=False)
    assert meta.count == 39 and meta.version and (tmp_path / "idx" / meta.version).is_dir()
    before, after = index.search(queries, 10), loaded.search(queries, 10)
    assert before.ids == after.ids
    np.testing.assert_array_equal(np.stack(before.scores), np.stack(after.scores))
    loaded.add(["new"], docs[[7]])  # labels continue after a reload
    assert loaded.search(docs[[7]], 1).ids == [["new"]]


def test_crash_during_save_keeps_previous_version(tmp_path, monkeypatch) -> None:
    rng = np.random.default_rng(4)
    docs = unit(rng, 10)
    index = FaissIndex.create(16, use_gpu=False)
    index.add([f"d{i}" for i in range(10)], docs)
    save_index(index, manifest(), tmp_path / "idx")
    index.add(["extra"], unit(rng, 1))

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(faiss, "write_index", crash)
    with pytest.raises(OSError):
        save_index(index, manifest(), tmp_path / "idx")
    monkeypatch.undo()
    loaded, meta = load_index(tmp_path / "idx", use_gpu=False)
    assert meta.count == 10 and "extra" not in loaded
    assert not [p for p in (tmp_path / "idx").iterdir() if p.name.startswith(".tmp")]


def test_refuses_other_model_or_dimension(tmp_path) -> None:
    index = FaissIndex.create(16, use_gpu=False)
    index.add(["a"], np.eye(16, dtype=np.float32)[:1])
    save_index(index, manifest(), tmp_path / "idx")
    with pytest.raises(IndexMismatchError, match="fingerprint"):
        load_index(tmp_path / "idx", model_fingerprint="other")
    with pytest.raises(IndexMismatchError, match="dimension 16"):
        load_index(tmp_path / "idx", dimension=384)
    with pytest.raises(IndexNotFoundError, match="no index 'missing'"):
        load_index("missing")
