"""PNG plots for people: the figure set-up every plot shares, atomic PNG writes, ROC curves."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from retriever.atomic import atomic_write_bytes


def new_figure(figsize: tuple[float, float], **subplots):
    """A ``(figure, axes)`` pair on the headless Agg backend: the one plot set-up (then :func:`save_png`).
    ``subplots`` (``ncols``, ``squeeze``, ...) go to ``plt.subplots``. matplotlib is imported here, not at the
    top: the backend must be chosen before pyplot loads, and the CLI starts without it."""
    import matplotlib  # CLI start-up; the backend is chosen before pyplot loads

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after the backend is chosen

    return plt.subplots(figsize=figsize, **subplots)


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str = "ROC") -> Path:
    """One ROC curve per name from ``(labels, scores)``, written atomically as a PNG."""
    fig, ax = new_figure((5.5, 5))
    for name, (labels, scores) in curves.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(labels, scores):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(loc="lower right", fontsize=8)
    return save_png(fig, path)


def save_png(fig, path: Path, dpi: int = 120) -> Path:
    """Render a matplotlib figure and write it atomically (a crash never leaves half a PNG)."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    close_figure(fig)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def close_figure(fig) -> None:
    """Free a figure from :func:`new_figure` (pyplot keeps every open one alive)."""
    import matplotlib.pyplot as plt  # CLI start-up (loaded by new_figure)

    plt.close(fig)
