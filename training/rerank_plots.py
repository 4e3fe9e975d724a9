"""The PNG of per-step gradient weights that each reranker objective gives to positives, hard and easy
negatives (arXiv 2510.14824's explanation of SFT versus CL)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SERIES = (("weight_positive", "positives", "-"), ("weight_hard", "hard negatives", "--"),
          ("weight_easy", "easy negatives", ":"))


def _smooth(values: list[float], window: int) -> np.ndarray:
    if len(values) < window or window <= 1:
        return np.asarray(values)
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def plot_gradient_weights(logs: dict[str, Path], png: Path, window: int = 5) -> Path | None:
    """One line per (run, document kind): the mean per-document gradient weight against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from retriever.evaluate.plots import save_png

    fig, ax = plt.subplots(figsize=(7, 4.2))
    drawn = False
    for (label, path), color in zip(logs.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False):
        if not Path(path).is_file():
            continue
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        for key, kind, style in SERIES:
            points = [(r["step"], r[key]) for r in rows if key in r]
            if not points:
                continue
            steps, values = zip(*points, strict=True)
            smooth = _smooth(list(values), window)
            ax.plot(steps[len(steps) - len(smooth):], smooth, style, color=color, label=f"{label}: {kind}")
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set(xlabel="step", ylabel="mean |dL/d score| per document", yscale="log",
           title="gradient weight per document (moving average)")
    ax.legend(fontsize=7)
    return save_png(fig, Path(png), dpi=110)
