from pathlib import Path

import pytest

from retriever.data import held_out_split, load_beir, resolve_dataset
from retriever.errors import DataError


def test_loads_tiny_and_ignores_metadata(tiny_dir: Path) -> None:
    ds = load_beir(tiny_dir)
    assert len(ds.corpus) == 12 and len(ds.queries) == 10
    assert ds.queries["q1"] == "how do plants make oxygen from sunlight"
    assert ds.doc_texts(["d1"]) == ["Photosynthesis Plants convert sunlight, water and carbon dioxide into glucose "
                                    "and oxygen."]
    assert set(ds.corpus["d1"]) == {"title", "text"}
    assert ds.splits == ["train", "dev", "test"] and ds.dev_is_derived
    assert ds.warnings == []


def test_broken_json_line_names_file_and_line(tiny_dir: Path) -> None:
    lines = (tiny_dir / "corpus.jsonl").read_text().splitlines()
    lines[4] = lines[4][:-3]
    (tiny_dir / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"corpus\.jsonl:5: invalid JSON"):
        load_beir(tiny_dir)


def test_unknown_qrels_ids_are_counted_not_silently_dropped(tiny_dir: Path) -> None:
    with open(tiny_dir / "qrels" / "test.tsv", "a") as handle:
        handle.write("q7\tnope\t1\nq99\td1\t1\nq98\td2\t1\n")
    ds = load_beir(tiny_dir)
    assert any("2 rows name an unknown query and 1 rows name an unknown document" in w for w in ds.warnings)
    assert "nope" not in ds.qrels("test")["q7"] and "q99" not in ds.qrels("test")
    with pytest.raises(DataError, match="unknown"):
        load_beir(tiny_dir, strict=True)


def test_empty_texts_are_reported(tiny_dir: Path) -> None:
    with open(tiny_dir / "corpus.jsonl", "a") as handle:
        handle.write('{"_id": "d13", "title": "", "text": "  "}\n')
    assert "1 documents have an empty title and text" in load_beir(tiny_dir).warnings


def test_held_out_split_is_seeded_disjoint_and_complete() -> None:
    qrels = {f"q{i}": {f"d{i}": 1} for i in range(100)}
    rest, held = held_out_split(qrels, 0.1, seed=3)
    assert len(held) == 10 and not set(rest) & set(held) and set(rest) | set(held) == set(qrels)
    assert held_out_split(qrels, 0.1, seed=3)[1] == held
    assert held_out_split(qrels, 0.1, seed=4)[1] != held


def test_derived_dev_is_removed_from_train(tiny_dir: Path) -> None:
    ds = load_beir(tiny_dir)
    assert not set(ds.qrels("train")) & set(ds.qrels("dev"))
    assert set(ds.qrels("train")) | set(ds.qrels("dev")) == set(ds.file_qrels["train"])
    with pytest.raises(DataError, match="no split 'validation'"):
        ds.qrels("validation")


def test_resolve_by_path_and_unknown_name(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_dataset(str(tiny_dir)) == tiny_dir.resolve()
    monkeypatch.setenv("RETRIEVER_DATA_PATH", str(tiny_dir.parent))
    assert resolve_dataset("tiny") == tiny_dir.resolve()
    with pytest.raises(DataError, match="not found on the data path"):
        resolve_dataset("no-such-dataset", download=False)


def test_download_failure_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from beir import util

    def offline(url: str, out_dir: str) -> str:
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(util, "download_and_unzip", offline)
    monkeypatch.setenv("RETRIEVER_DATA_PATH", str(tmp_path))
    with pytest.raises(DataError, match=r"download .* failed \(ConnectionError.*Offline\?"):
        resolve_dataset("fiqa")
