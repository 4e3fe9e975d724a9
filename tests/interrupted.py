"""A training run killed between two checkpoints, then resumed: the resume tests of the Trainer loops."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training import callbacks
from training.run_log import LOG_FILE, read_log


class Crash(RuntimeError):
    pass


def crash_then_resume(train: Callable, config, monkeypatch: pytest.MonkeyPatch, at_step: int = 3) -> dict:
    """Run ``train(config)`` (checkpoints every 2 steps) until it dies at ``at_step``, after checkpoint-2 and
    before checkpoint-4; check that a rerun without ``resume`` is refused, then resume; the resumed summary."""
    def crash(self, args, state, control, **kwargs):
        if state.global_step == at_step:
            raise Crash
    monkeypatch.setattr(callbacks.JsonLogCallback, "on_step_end", crash, raising=False)
    with pytest.raises(Crash):
        train(config)
    monkeypatch.undo()
    found = sorted(p.name for p in (Path(config.output) / "checkpoints").glob("checkpoint-*"))
    assert found == [f"checkpoint-{2 * (at_step // 2)}"]
    with pytest.raises(Exception, match="pass --resume"):
        train(config)
    return train(config.model_copy(update={"resume": True}))


def logged_losses(output: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_log(Path(output) / LOG_FILE) if "loss" in r}


def assert_same_run(cut: Path, whole: Path, steps: int) -> None:
    """The resumed run ``cut`` logged every step once more after the crash, with the uninterrupted run's
    losses (same batches, same dropout masks: the RNG state came back), and saved the same weights."""
    resumed, uncut = logged_losses(cut), logged_losses(whole)
    assert sorted(resumed) == list(range(1, steps + 1))
    assert resumed == pytest.approx(uncut, rel=1e-5, abs=1e-7)
    last = f"checkpoints/checkpoint-{steps}/model.safetensors"
    final, reference = load_file(Path(cut) / last), load_file(Path(whole) / last)
    assert sorted(final) == sorted(reference)
    for name, tensor in reference.items():
        torch.testing.assert_close(final[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
