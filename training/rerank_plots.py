"""The PNG of per-step gradient weights that each reranker objective gives to positives, hard and easy
negatives (arXiv 2510.14824's explanation of SFT versus CL)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

from retriever.evaluate.plots import close_figure, new_figure, save_png
from training.run_log import read_log

SERIES = (("weight_positive", "positives", "-"), ("weight_hard", "hard negatives", "--"),
          ("weight_easy", "easy negatives", ":"))


def _smooth(values: list[float], window: int) -> np.ndarray:
    if len(values) < window or window <= 1:
        return np.asarray(values)
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def plot_gradient_weights(logs: dict[str, Path], png: Path, window: int = 5) -> Path | None:
    """One line per (run, document kind): the mean per-document gradient weight against the step."""
    fig, ax = new_figure((7, 4.2))
    drawn = False
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for (label, path), color in zip(logs.items(), colors, strict=False):
        rows = read_log(path)
        for key, kind, style in SERIES:
            points = [(r["step"], r[key]) for r in rows if key in r]
            if not points:
                continue
            steps, values = zip(*points, strict=True)
            smooth = _smooth(list(values), window)
            ax.plot(steps[len(steps) - len(smooth):], smooth, style, color=color, label=f"{label}: {kind}")
            drawn = True
    if not drawn:
        close_figure(fig)
        return None
    ax.set(xlabel="step", ylabel="mean |dL/d score| per document", yscale="log",
           title="gradient weight per document (moving average)")
    ax.legend(fontsize=7)
    return save_png(fig, Path(png), dpi=110)
