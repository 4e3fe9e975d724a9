"""The results file ``bench/results.json`` and its rendering ``docs/results.md``.

Each record: ``{dataset, split, method, model, metrics, seconds, command, commit}``. A re-run replaces
the record with the same (dataset, split, method, model) key.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from retriever.atomic import atomic_write_json, atomic_write_text, file_lock
from retriever.onnx.files import int8_isa

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.json"
TABLE = ROOT / "docs" / "results.md"
KEY = ("dataset", "split", "method", "model", "hardware")


def commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"


def hardware() -> str:
    """Where the number was measured: the GPU's name, or the CPU core count."""
    try:
        import torch  # here: ``python -m bench.results`` re-renders the table without loading torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"cpu x{os.cpu_count()}"


def speed_label(model: str) -> str:
    """A timing's model label with the instruction set int8 runs on (``... [avx512_vnni]``, the int8 file's
    ISA): int8 speed differs 2-4x between CPUs with and without VNNI, so their records are kept apart
    (quality records are not labelled)."""
    return f"{model} [{int8_isa()}]" if hardware().startswith("cpu") else model


def this_command() -> str:
    """How the running benchmark was started, as ``python -m bench.x args``."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    head = f"python -m {spec.name}" if spec else f"python {sys.argv[0]}"
    return " ".join([head, shlex.join(sys.argv[1:])]).strip()


def load() -> list[dict[str, Any]]:
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else []


def merge(path: Path) -> int:
    """Upsert the GPU records of another results file (one written on a GPU machine from a copy of this
    one, whose CPU records are older copies of ours); returns how many changed."""
    incoming = [r for r in json.loads(Path(path).read_text()) if not str(r.get("hardware", "cpu")).startswith("cpu")]
    with _locked():
        rows = {tuple(r.get(k) for k in KEY): r for r in load()}
        added = 0
        for r in incoming:
            key = tuple(r.get(k) for k in KEY)
            if rows.get(key) != r:
                rows[key], added = r, added + 1
        ordered = sorted(rows.values(), key=lambda r: tuple(str(r.get(k)) for k in KEY))
        atomic_write_json(RESULTS, ordered)
        render(ordered)
    return added


def rounded(value: float) -> float:
    """Five decimals, or four significant digits below 0.01, so that a learning rate of 5e-6 or a p-value of
    3e-8 keeps its value."""
    return float(f"{value:.4g}") if value and abs(value) < 0.01 else round(value, 5)


def record(dataset: str, split: str, method: str, model: str, metrics: dict[str, float], seconds: float,
           command: str | None = None, speed: bool = False) -> dict[str, Any]:
    """Upsert one record, then re-render the table. ``speed``: a timing, its model labelled by ``speed_label``."""
    entry = {
        "dataset": dataset, "split": split, "method": method, "model": speed_label(model) if speed else model,
        "metrics": {k: (rounded(v) if isinstance(v, float) else v) for k, v in metrics.items()},
        "seconds": round(seconds, 2), "command": command or this_command(), "commit": commit(),
        "hardware": hardware(),
    }
    with _locked():  # benchmarks run side by side: no lost updates
        rows = [r for r in load() if tuple(r.get(k) for k in KEY) != tuple(entry[k] for k in KEY)]
        rows.append(entry)
        rows.sort(key=lambda r: tuple(str(r.get(k)) for k in KEY))
        atomic_write_json(RESULTS, rows)
        render(rows)
    return entry


def remove(dataset: str, method: str, model: str | None = None, split: str = "test") -> int:
    """Delete the records of a superseded implementation (every model label of ``method`` unless ``model``
    is given), then re-render the table; returns how many went."""
    with _locked():
        rows = load()
        keep = [r for r in rows if not (r["dataset"] == dataset and r["split"] == split and r["method"] == method
                                        and (model is None or r["model"] == model))]
        if len(keep) != len(rows):
            atomic_write_json(RESULTS, keep)
            render(keep)
    return len(rows) - len(keep)


def _locked():
    return file_lock(RESULTS.with_suffix(".lock"))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return "" if value is None else str(value)


FAMILIES = (  # (title, predicate on the method, preferred metric columns)
    ("Retrieval", lambda m: not m.startswith(("filter-", "serve-", "peer-", "store-", "encode-", "rerank-")),
     ("ndcg@10", "mrr@10", "recall@100", "map@100", "auc_global", "auc_per_query", "false_negative_rate",
      "train_seconds", "samples_per_s", "trainable_params")),
    ("Reranking (first stage named before '>>')", lambda m: m.startswith("rerank-"),
     ("ndcg@10", "mrr@10", "first_stage_ndcg@10", "depth", "n_queries", "ms_per_query", "train_seconds",
      "false_negative_rate")),
    ("Relevance filtering", lambda m: m.startswith("filter-"),
     ("k", "pr_auc", "p_at_r95", "filtered_at_r95", "threshold", "results_per_query", "recall_at_threshold",
      "precision_at_threshold")),
    ("Serving", lambda m: m.startswith(("serve-", "peer-")), ("concurrency", "qps", "p50_ms", "p95_ms", "p99_ms",
                                                               "errors")),
    ("Vector stores", lambda m: m.startswith("store-"), ("batch", "qps", "p50_ms", "p99_ms", "recall@10_vs_exact",
                                                         "build_seconds", "n_vectors")),
    ("Other", lambda m: m.startswith("encode-"), ()),
)


def _model_label(r: dict) -> str:
    """The record's model, with its hardware where that is not a CPU (a GPU)."""
    where = r.get("hardware", "cpu")
    return r["model"] + ("" if where.startswith("cpu") else f" [{where}]")


def _table(rows: list[dict], preferred: tuple[str, ...]) -> list[str]:
    columns = [c for c in preferred if any(c in r["metrics"] for r in rows)]
    if not columns:
        return [f"- **{r['method']}** ({_model_label(r)}): "
                + ", ".join(f"{k} = {_fmt(v)}" for k, v in r["metrics"].items()) for r in rows] + [""]
    lines = ["| method | model | " + " | ".join(columns) + " |", "|---|---|" + "---:|" * len(columns)]
    for r in rows:
        cells = " | ".join(_fmt(r["metrics"].get(c)) for c in columns)
        lines.append(f"| {r['method']} | {_model_label(r)} | {cells} |")
    extras = [(r, {k: v for k, v in r["metrics"].items() if k not in columns}) for r in rows]
    lines.append("")
    lines += [f"- {r['method']} ({_model_label(r)}): " + ", ".join(f"{k} = {_fmt(v)}" for k, v in extra.items())
              for r, extra in extras if extra]
    return lines + [""]


def render(rows: list[dict[str, Any]] | None = None) -> str:
    """Write ``docs/results.md``: per dataset/split, one table per family of methods, then the commands."""
    rows = load() if rows is None else rows
    lines = ["# Results", "", "Generated from `bench/results.json` by `python -m bench.results`; do not edit.",
             "Each number comes with the command that reproduces it (below each section).", ""]
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["split"]), []).append(row)
    for (dataset, split), group in sorted(groups.items()):
        lines += [f"## {dataset} / {split}", ""]
        for title, belongs, preferred in FAMILIES:
            members = [r for r in group if belongs(r["method"])]
            if members:
                lines += [f"### {title}", ""] + _table(members, preferred)
        lines += ["Commands:", ""]
        lines += [f"- `{r['method']}` ({r['model']}): `{r['command']}` (commit {r['commit']}"
                  + (f", {r['hardware']})" if r.get("hardware") else ")") for r in group]
        lines.append("")
    text = "\n".join(lines)
    atomic_write_text(TABLE, text)
    return text


def write_significance(dataset: str, split: str, label: str, qrels, runs: dict) -> Path:
    """ranx paired t-test report over the given runs, as ``docs/significance/<dataset>_<split>_<label>.md``."""
    from retriever.evaluate import compare_runs  # here: rendering the table needs neither ranx nor sklearn

    report = compare_runs(qrels, runs)
    path = ROOT / "docs" / "significance" / f"{dataset}_{split}_{label}.md"
    text = (f"# Paired t-test: {dataset} / {split} ({label})\n\nGenerated by `{this_command()}`. "
            "A superscript letter marks a significant win (p < 0.05) over the run with that letter.\n\n"
            f"```\n{report}\n```\n")
    atomic_write_text(path, text)
    return path


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--merge":
        print(f"merged {merge(Path(sys.argv[2]))} records from {sys.argv[2]}")
    else:
        render()
