"""Issue 22: damaged index versions and document stores give one clear error (or, when asked, the previous
version), pruning keeps the version a save replaced, and nothing acknowledged is dropped silently."""

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from retriever.errors import RetrieverError
from retriever.index import FaissIndex, IndexManifest, load_index, save_index
from retriever.index import store as store_module


def _save(folder: Path, n: int = 5) -> Path:
    index = FaissIndex.create(4, use_gpu=False)
    vectors = np.eye(4, dtype=np.float32)[np.arange(n) % 4] + np.arange(n)[:, None] * 0.01
    index.add([f"d{i}" for i in range(n)], vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    manifest = IndexManifest(name=folder.name, model_id="m", model_fingerprint="f", dimension=4)
    return save_index(index, manifest, folder)


def test_pruning_keeps_the_version_a_save_replaced(tmp_path: Path, monkeypatch) -> None:
    from datetime import datetime, timezone

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)  # three saves in the same second

    suffixes = iter(["bbbbbb", "aaaaaa", "cccccc"])
    monkeypatch.setattr(store_module, "datetime", Frozen)
    monkeypatch.setattr(store_module.uuid, "uuid4", lambda: type("U", (), {"hex": next(suffixes) + "0" * 26})())
    folder = tmp_path / "idx"
    first, second, third = (_save(folder, n) for n in (3, 4, 5))
    assert (folder / "CURRENT").read_text().strip() == third.name
    assert second.is_dir() and not first.is_dir()  # the suffix order would have pruned `second`
    assert len(load_index(folder, use_gpu=False)[0]) == 5


def test_version_names_sort_by_time(tmp_path: Path) -> None:
    names = [_save(tmp_path / "idx", n).name for n in (3, 4)]
    assert names == sorted(names) and store_module.VERSION_NAME.fullmatch(names[0])


@pytest.mark.parametrize(("damage", "message"), [
    (lambda v: (v / "manifest.json").write_text((v / "manifest.json").read_text()[:40]), "manifest of"),
    (lambda v: (v.parent / "CURRENT").write_text("v20990101T000000-abcdef\n"), "missing or empty"),
    (lambda v: (v.parent / "CURRENT").write_text(""), "not a version name"),
    (lambda v: (v.parent / "CURRENT").write_text(str(v.resolve())), "not a version name"),
    (lambda v: (v.parent / "CURRENT").write_text("../other/" + v.name), "not a version name"),
    (lambda v: (v / "ids.json").write_text(json.dumps(json.loads((v / "ids.json").read_text())[:-2])),
     "inconsistent: 5 vectors, 3 distinct ids"),
    (lambda v: (v / "ids.json").write_text(json.dumps(["d0"] * 5)), "inconsistent"),
    (lambda v: (v / "index.faiss").write_bytes((v / "index.faiss").read_bytes()[:50]), "unreadable"),
])
def test_damaged_versions_give_one_clear_error(tmp_path: Path, damage, message) -> None:
    version = _save(tmp_path / "idx")
    damage(version)
    with pytest.raises(RetrieverError, match=message) as error:
        load_index(tmp_path / "idx", use_gpu=False)
    assert "\n" not in str(error.value)


def test_current_outside_the_folder_is_never_followed(tmp_path: Path) -> None:
    outside = _save(tmp_path / "elsewhere", 3)
    _save(tmp_path / "idx", 5)
    (tmp_path / "idx" / "CURRENT").write_text(str(outside))
    with pytest.raises(RetrieverError, match="inside the index folder"):
        load_index(tmp_path / "idx", use_gpu=False)


def test_atomic_writes_respect_the_umask(tmp_path: Path) -> None:
    from retriever.atomic import atomic_write_bytes

    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        version = _save(tmp_path / "idx")
        os.umask(0o077)
        atomic_write_bytes(tmp_path / "b.bin", b"y")
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "idx" / "CURRENT").stat().st_mode & 0o777 == 0o644
    assert (version / "manifest.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o600


# ---- the live index: fallback, the document store -------------------------------------------------------

@pytest.fixture
def live_folder(tiny_dir: Path, encoder, tmp_path: Path) -> Path:
    """The tiny index opened once (store filled from the dataset), then one API upsert saved: two versions."""
    from retriever.data import load_beir
    from retriever.live import LiveIndex
    from retriever.pipeline import build_index

    _, _, path = build_index(load_beir(tiny_dir), encoder, "tiny", root=tmp_path / "indexes", use_gpu=False)
    live = LiveIndex.open(path.parent, encoder=encoder, use_gpu=False)
    live.upsert([("api-1", "Tides", "The moon pulls the oceans.")])
    live.save()
    live.close()
    return path.parent


def test_fallback_to_the_previous_version_only_when_asked(live_folder: Path, encoder, caplog) -> None:
    from retriever.live import LiveIndex

    current = live_folder / (live_folder / "CURRENT").read_text().strip()
    (current / "index.faiss").write_bytes(b"garbage")
    with pytest.raises(RetrieverError, match="--fallback-to-previous"):
        LiveIndex.open(live_folder, encoder=encoder, use_gpu=False)
    with caplog.at_level(logging.ERROR):
        live = LiveIndex.open(live_folder, encoder=encoder, use_gpu=False, fallback=True)
    try:
        assert live.manifest.version != current.name
        assert "api-1" in live.index  # the store re-adds the write the older version lacks
        assert (live_folder / "CURRENT").read_text().strip() != current.name
        assert any("damaged" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
    finally:
        live.close()


def test_a_damaged_store_is_a_clear_error(live_folder: Path, encoder) -> None:
    from retriever.live import STORE_FILE, LiveIndex

    for leftover in live_folder.glob(STORE_FILE + "-*"):
        leftover.unlink()
    (live_folder / STORE_FILE).write_bytes((live_folder / STORE_FILE).read_bytes()[:100])
    with pytest.raises(RetrieverError, match="document store .* is damaged"):
        LiveIndex.open(live_folder, encoder=encoder, use_gpu=False)


def test_a_missing_store_never_drops_api_documents(live_folder: Path, encoder, caplog) -> None:
    from retriever.live import STORE_FILE, LiveIndex

    for path in live_folder.glob(STORE_FILE + "*"):
        path.unlink()
    versions = sorted(p.name for p in live_folder.iterdir() if p.is_dir())
    with caplog.at_level(logging.ERROR), pytest.raises(RetrieverError, match="1 indexed documents .*'api-1'"):
        LiveIndex.open(live_folder, encoder=encoder, use_gpu=False)
    assert any(r.levelno == logging.ERROR and "restore docs.sqlite" in r.getMessage() for r in caplog.records)
    assert sorted(p.name for p in live_folder.iterdir() if p.is_dir()) == versions  # no new version saved
    index, _ = load_index(live_folder, use_gpu=False)
    assert "api-1" in index


def test_reload_shares_the_document_store(live_folder: Path) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    app = create_app(Settings(indexes=[str(live_folder)], index_dir=live_folder.parent, use_gpu=False,
                              log_json=False))
    with TestClient(app) as client:
        runtime = app.state.runtime
        before = runtime.indexes["tiny"]
        assert client.post("/admin/reload", json={}).status_code == 200
        after = runtime.indexes["tiny"]
        assert after is not before and after.store is before.store


def test_data_source_check_compares_the_corpus(tiny_dir: Path, tmp_path: Path) -> None:
    import shutil

    from retriever.data import load_beir
    from retriever.index.manifest import DataSource, check_data_source

    dataset = load_beir(tiny_dir)
    manifest = IndexManifest(name="i", model_id="m", model_fingerprint="f", dimension=4,
                             data_source=DataSource(dataset="tiny", path=str(tiny_dir), sha256=dataset.content_hash))
    copy = tmp_path / "renamed-copy"
    shutil.copytree(tiny_dir, copy)
    check_data_source(manifest, load_beir(copy))  # same corpus under another name: fine
    (copy / "corpus.jsonl").write_text((tiny_dir / "corpus.jsonl").read_text().replace("Plants", "Trees"))
    with pytest.raises(RetrieverError, match="built from dataset 'tiny'.*--force"):
        check_data_source(manifest, load_beir(copy))
    check_data_source(manifest, load_beir(copy), force=True)
    check_data_source(manifest.model_copy(update={"data_source": None}), load_beir(copy))
