import json

from bench import results


def test_rerun_replaces_its_record_and_renders(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(results, "RESULTS", tmp_path / "results.json")
    monkeypatch.setattr(results, "TABLE", tmp_path / "results.md")
    results.record("scifact", "test", "zero-shot", "m", {"ndcg@10": 0.5}, 1.0, command="cmd a")
    results.record("scifact", "test", "mw", "m", {"ndcg@10": 0.6, "auc_global": 0.9}, 2.0, command="cmd b")
    results.record("scifact", "test", "zero-shot", "m", {"ndcg@10": 0.55}, 1.0, command="cmd c")
    rows = json.loads((tmp_path / "results.json").read_text())
    assert [(r["method"], r["metrics"]["ndcg@10"]) for r in rows] == [("mw", 0.6), ("zero-shot", 0.55)]
    assert set(rows[0]) == {"dataset", "split", "method", "model", "metrics", "seconds", "command", "commit",
                            "hardware"}
    table = (tmp_path / "results.md").read_text()
    assert "| zero-shot | m | 0.5500 |" in table and "`cmd c`" in table and "cmd a" not in table


def test_merge_takes_gpu_records_and_keeps_both_hardwares(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(results, "RESULTS", tmp_path / "results.json")
    monkeypatch.setattr(results, "TABLE", tmp_path / "results.md")
    monkeypatch.setattr(results, "hardware", lambda: "cpu x2")
    results.record("scifact", "test", "mw", "m", {"ndcg@10": 0.6}, 1.0, command="local")
    other = [{"dataset": "scifact", "split": "test", "method": "mw", "model": "m", "metrics": {"ndcg@10": 0.1},
              "seconds": 1, "command": "stale copy", "commit": "x", "hardware": "cpu x2"},
             {"dataset": "scifact", "split": "test", "method": "mw", "model": "m", "metrics": {"ndcg@10": 0.7},
              "seconds": 1, "command": "gpu", "commit": "x", "hardware": "NVIDIA H200"}]
    (tmp_path / "gpu.json").write_text(json.dumps(other))
    assert results.merge(tmp_path / "gpu.json") == 1
    rows = {r["hardware"]: r["metrics"]["ndcg@10"] for r in json.loads((tmp_path / "results.json").read_text())}
    assert rows == {"cpu x2": 0.6, "NVIDIA H200": 0.7}
    assert "[NVIDIA H200]" in (tmp_path / "results.md").read_text()


def test_small_values_keep_their_significant_digits() -> None:
    from bench.results import rounded

    assert (rounded(5e-6), rounded(3.14159e-8), rounded(0.0)) == (5e-6, 3.142e-8, 0.0)
    assert (rounded(0.6451234), rounded(-0.0123456), rounded(12.3456789)) == (0.64512, -0.01235, 12.34568)


def test_speed_records_are_kept_apart_by_the_cpus_int8_extension(tmp_path, monkeypatch) -> None:
    """A timing on a VNNI CPU sits beside the same timing on an AVX2-only one; quality rows are not labelled."""
    monkeypatch.setattr(results, "RESULTS", tmp_path / "results.json")
    monkeypatch.setattr(results, "TABLE", tmp_path / "results.md")
    monkeypatch.setattr(results, "hardware", lambda: "cpu x2")
    for isa, rate in (("avx2", 22.0), ("avx512_vnni", 80.0)):
        monkeypatch.setattr(results, "int8_isa", lambda isa=isa: isa)
        results.record("scifact", "corpus", "encode-throughput", "m", {"docs_per_s": rate}, 1.0, speed=True)
    results.record("scifact", "test", "mw", "m", {"ndcg@10": 0.6}, 1.0)
    rows = {(r["method"], r["model"], r["hardware"]) for r in json.loads((tmp_path / "results.json").read_text())}
    assert rows == {("encode-throughput", "m [avx2]", "cpu x2"), ("encode-throughput", "m [avx512_vnni]", "cpu x2"),
                    ("mw", "m", "cpu x2")}
    table = (tmp_path / "results.md").read_text()
    assert "m [avx512_vnni]" in table and "| mw | m |" in table


def test_int8_isa_reads_the_flags(tmp_path, monkeypatch) -> None:
    import retriever.onnx.files as files

    real = files.Path

    def fake(text: str):
        (tmp_path / "cpuinfo").write_text(text)
        monkeypatch.setattr(files, "Path", lambda p: real(tmp_path / "cpuinfo") if p == "/proc/cpuinfo" else real(p))

    fake("flags : fpu sse2 avx2 avx512f avx512_vnni\n")
    assert (files.int8_isa(), files.int8_file_name()) == ("avx512_vnni", "model_qint8_avx512_vnni.onnx")
    fake("flags : fpu sse2 avx2 avx512f\n")
    assert files.int8_isa() == "avx512"
    fake("flags : fpu sse2 avx2 fma\n")
    monkeypatch.setattr(files.os, "uname", lambda: type("U", (), {"machine": "x86_64"})())
    assert (files.int8_isa(), files.int8_file_name()) == ("avx2", "model_qint8_avx2.onnx")
