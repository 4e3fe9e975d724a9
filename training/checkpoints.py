"""Checkpoints for the hand-written training loops: model folders, optimiser and schedule state, the step,
and RNG state, written to a staging folder and renamed into place so a crash never leaves half of one."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from retriever.atomic import atomic_dir

PREFIX = "step-"


def latest(folder: Path) -> Path | None:
    steps = sorted((p for p in Path(folder).glob(f"{PREFIX}*") if p.name[len(PREFIX):].isdigit()),
                   key=lambda p: int(p.name[len(PREFIX):]))
    return steps[-1] if steps else None


def save(folder: Path, step: int, models: dict, optimizers: dict, state: dict, keep: int = 2) -> Path:
    """``models``: name -> object with ``save(path)``; ``optimizers``: name -> object with ``state_dict()``."""
    folder = Path(folder)
    target = folder / f"{PREFIX}{step}"
    with atomic_dir(target) as staging:
        for name, model in models.items():
            model.save(staging / name)
        torch.save({name: opt.state_dict() for name, opt in optimizers.items()}, staging / "optimizers.pt")
        torch.save({"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
                   staging / "rng.pt")
        (staging / "state.json").write_text(json.dumps({"step": step, **state}))
    for old in sorted(folder.glob(f"{PREFIX}*"), key=lambda p: int(p.name[len(PREFIX):]))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def load_state(checkpoint: Path, optimizers: dict) -> dict:
    """Restore optimiser/schedule and RNG state; return ``state.json`` (with ``step``)."""
    saved = torch.load(checkpoint / "optimizers.pt", weights_only=False)
    for name, opt in optimizers.items():
        opt.load_state_dict(saved[name])
    rng = torch.load(checkpoint / "rng.pt", weights_only=False)
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    return json.loads((checkpoint / "state.json").read_text())
