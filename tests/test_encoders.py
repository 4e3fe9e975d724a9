import numpy as np
import torch

from retriever.encoders import BiEncoder, EmbeddingCache, TextEncoder, model_fingerprint


def test_cache_reuses_vectors_and_encodes_only_misses(minilm, tmp_path, monkeypatch) -> None:
    encoder = TextEncoder(minilm, "m", EmbeddingCache(tmp_path))
    calls: list[int] = []
    original = encoder._encode_model

    def counting(texts, side):
        calls.append(len(texts))
        return original(texts, side)

    monkeypatch.setattr(encoder, "_encode_model", counting)
    first = encoder.encode(["alpha beta", "gamma", "alpha beta"], side="document")
    assert calls == [2]  # a repeated text is encoded once
    again = TextEncoder(minilm, "m", EmbeddingCache(tmp_path))  # a fresh process reads the files
    monkeypatch.setattr(again, "_encode_model", counting)
    second = again.encode(["gamma", "alpha beta", "delta"], side="document")
    assert calls == [2, 1]
    np.testing.assert_array_equal(second[:2], first[[1, 0]])
    np.testing.assert_allclose(np.linalg.norm(second, axis=1), 1.0, rtol=1e-5)


def test_query_and_document_sides_are_cached_apart(minilm, tmp_path) -> None:
    cache = EmbeddingCache(tmp_path)
    encoder = TextEncoder(minilm, "m", cache)
    encoder.encode(["same text"], side="query")
    rows, hit = cache.lookup(f"{encoder.fingerprint}-document", [b"x" * 20])
    assert not hit.any()


def test_fingerprint_follows_the_weights(minilm) -> None:
    before = model_fingerprint(minilm)
    assert model_fingerprint(minilm) == before
    param = next(minilm.parameters())
    with torch.no_grad():
        param[0, 0] += 1.0
    try:
        assert model_fingerprint(minilm) != before
    finally:
        with torch.no_grad():
            param[0, 0] -= 1.0
    assert model_fingerprint(minilm) == before


def test_bi_encoder_towers(minilm, tmp_path) -> None:
    doc = TextEncoder(minilm, "m", None)
    shared = BiEncoder(doc)
    assert shared.shared and shared.dimension == 384
    query = TextEncoder(minilm, "q", None)
    towers = BiEncoder(query, doc)
    assert not towers.shared
    assert towers.encode_queries(["a question"]).shape == (1, 384)


def test_cache_keys_survive_a_round_trip_including_nul_bytes(tmp_path) -> None:
    cache = EmbeddingCache(tmp_path)
    keys = [b"\x01" * 19 + b"\x00", b"\x00" * 20, b"\x02" * 20]
    cache.add("ns", keys, np.arange(6, dtype=np.float32).reshape(3, 2))
    rows, hit = EmbeddingCache(tmp_path).lookup("ns", keys)
    assert hit.all() and rows.tolist() == [0, 1, 2]


def test_two_processes_adding_to_one_cache_table_keep_each_others_vectors(tmp_path) -> None:
    # two caches over one folder stand for two processes: each read the (empty) table before the other wrote
    first, second = EmbeddingCache(tmp_path), EmbeddingCache(tmp_path)
    a, b, c = (bytes([i]) * 20 for i in (1, 2, 3))
    assert not first.lookup("ns", [a])[1].any() and not second.lookup("ns", [b])[1].any()
    first.add("ns", [a], np.full((1, 4), 1.0, dtype=np.float32))
    second.add("ns", [b, a], np.array([[2.0] * 4, [9.0] * 4], dtype=np.float32))  # a is on disk now: kept as 1
    first.add("ns", [c], np.full((1, 4), 3.0, dtype=np.float32))
    fresh = EmbeddingCache(tmp_path)
    rows, hit = fresh.lookup("ns", [a, b, c])
    assert hit.all()
    np.testing.assert_array_equal(fresh.vectors("ns")[rows][:, 0], [1.0, 2.0, 3.0])


def test_a_read_only_cache_is_still_read(tmp_path) -> None:
    key = b"\x05" * 20
    EmbeddingCache(tmp_path).add("ns", [key], np.ones((1, 3), dtype=np.float32))
    lock = tmp_path / "ns" / ".lock"
    lock.unlink()
    lock.mkdir()  # the lock file cannot be opened, as on a read-only mount (where root too is refused)
    rows, hit = EmbeddingCache(tmp_path).lookup("ns", [key])
    assert hit.all() and rows.tolist() == [0]
