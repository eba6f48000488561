"""Plots a person reads faster than a table."""

from __future__ import annotations

import os
from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")  # files only: runs on machines without a display
import matplotlib.pyplot as plt

from ..engine.recorder import RoundMetrics


def plot_accuracy(
    runs: Mapping[str, list[RoundMetrics]], path: str | os.PathLike, title: str
) -> None:
    """Test accuracy per round, one line per run."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for name, rounds in runs.items():
        pts = [(r.round, 100 * r.test_accuracy) for r in rounds if r.test_accuracy is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=name, linewidth=1.6)
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
