"""The JSON-lines training log (``log.jsonl``) every trainer writes: one dict per logged step."""

from __future__ import annotations

import json
from pathlib import Path

LOG_FILE = "log.jsonl"


def fresh_log(output: Path) -> Path:
    """Create the output folder and return an empty ``log.jsonl`` path in it."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    log_path = output / LOG_FILE
    log_path.unlink(missing_ok=True)
    return log_path


def append_log(path: Path, entry: dict) -> None:
    """Append one entry as a line (the file and its folder are created when missing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        handle.write(json.dumps(entry) + "\n")


def read_log(path: Path) -> list[dict]:
    """Every entry of a log; ``[]`` when there is none yet."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
