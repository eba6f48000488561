"""The paper's figures from our runs: learning curves, local over-fitting, accuracy per byte.

Curves are averaged over seeds round by round. Only completed runs are drawn: a
diverged run's curve stops early and would skew the mean over the rounds it has.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: runs on machines without a display
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .runs import Run
from .table1 import row_label

CURVE_BITS = (32, 8, 6)  # the paper's Figure 2: full precision against its two low widths
LINESTYLES = ("-", "--", ":", "-.")
COLOURS = tuple(f"C{i}" for i in range(10))  # matplotlib's default cycle


def _group(
    runs: Iterable[Run], key: Callable[[Run], Any], order: Callable[[Any], Any] = lambda k: k
) -> dict[Any, list[Run]]:
    """Runs by ``key``, keys sorted by ``order``: legends list settings in a reading order."""
    groups: dict[Any, list[Run]] = defaultdict(list)
    for run in runs:
        groups[key(run)].append(run)
    return {k: groups[k] for k in sorted(groups, key=order)}


def _mean_curve(runs: list[Run], metric: str, scale: float = 1.0) -> tuple[list[int], list[float]]:
    """Mean over runs of ``metric`` at each round where at least one run recorded it."""
    per_round: dict[int, list[float]] = defaultdict(list)
    for run in runs:
        for r in run.rounds:
            if r.get(metric) is not None:  # runs from before a metric was recorded lack it
                per_round[r["round"]].append(scale * r[metric])
    xs = sorted(per_round)
    return xs, [float(np.mean(per_round[x])) for x in xs]


def _cycle(keys: Iterable[Hashable], values: tuple[str, ...]) -> dict[Any, str]:
    """One style per key, fixed for the whole figure so a setting looks the same in every panel."""
    return {k: values[i % len(values)] for i, k in enumerate(dict.fromkeys(keys))}


def _variant_order(variant: tuple[int, bool]) -> tuple[bool, int]:
    """Averaged before not, wide before narrow: legends read from the baseline down."""
    bits, averaging = variant
    return not averaging, -bits


def _finish(ax: Axes, ylabel: str, title: str, xlabel: str = "round") -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_curves(runs: list[Run], dataset: str, path: Path) -> Path | None:
    """Figure 2: test accuracy and loss per round, 32 vs 8 vs 6 bits, all with averaging."""
    chosen = [r for r in runs if r.averaging and r.config["bits"] in CURVE_BITS]
    if not chosen:
        return None
    groups = _group(
        chosen,
        lambda r: (r.config["alpha"], r.config["bits"]),
        lambda k: (k[0], CURVE_BITS.index(k[1])),
    )
    colour = _cycle(CURVE_BITS, COLOURS)
    style = _cycle((alpha for alpha, _ in groups), LINESTYLES)
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(11, 4), dpi=120)
    for (alpha, bits), members in groups.items():
        line = dict(color=colour[bits], linestyle=style[alpha])
        label = f"{bits}-bit, α={alpha:g} (n={len(members)})"
        acc_ax.plot(*_mean_curve(members, "test_accuracy", 100), label=label, **line)
        loss_ax.plot(*_mean_curve(members, "test_loss"), label=label, **line)
    _finish(acc_ax, "test accuracy (%)", f"{dataset}: FedAvg + moving average")
    _finish(loss_ax, "test loss", f"{dataset}: mean over seeds")
    return _save(fig, path)


def plot_overfit(runs: list[Run], dataset: str, path: Path) -> Path | None:
    """Local over-fitting: clients' training loss falling while the global test loss rises."""
    if not runs:
        return None
    by_alpha = _group(runs, lambda r: r.config["alpha"])
    colour = _cycle(sorted({r.variant for r in runs}, key=_variant_order), COLOURS)
    fig, axes = plt.subplots(1, len(by_alpha), figsize=(5.5 * len(by_alpha), 4), dpi=120)
    for ax, (alpha, members) in zip(np.atleast_1d(axes), by_alpha.items(), strict=True):
        for variant, group in _group(members, lambda r: r.variant, _variant_order).items():
            name = row_label(variant)
            ax.plot(*_mean_curve(group, "train_loss"), color=colour[variant], label=f"{name} train")
            ax.plot(
                *_mean_curve(group, "test_loss"), "--", color=colour[variant], label=f"{name} test"
            )
        _finish(ax, "loss", f"{dataset}, α={alpha:g}: client train (—) vs global test (--)")
    return _save(fig, path)


def plot_drift(runs: list[Run], dataset: str, path: Path) -> Path | None:
    """Client drift per round (``engine/drift.py``) by precision and averaging, one panel
    per α: whether low precision keeps the clients' updates closer together."""
    recorded = [r for r in runs if any(x.get("client_drift") is not None for x in r.rounds)]
    if not recorded:
        return None
    by_alpha = _group(recorded, lambda r: r.config["alpha"])
    colour = _cycle(sorted({r.variant for r in recorded}, key=_variant_order), COLOURS)
    fig, axes = plt.subplots(1, len(by_alpha), figsize=(5.5 * len(by_alpha), 4), dpi=120)
    for ax, (alpha, members) in zip(np.atleast_1d(axes), by_alpha.items(), strict=True):
        for variant, group in _group(members, lambda r: r.variant, _variant_order).items():
            label = f"{row_label(variant)} (n={len(group)})"
            ax.plot(*_mean_curve(group, "client_drift"), color=colour[variant], label=label)
        ax.set_ylim(0, 1)
        _finish(ax, "client drift", f"{dataset}, α={alpha:g}: disagreement share of updates")
    return _save(fig, path)


def plot_accuracy_vs_bytes(runs: list[Run], path: Path) -> Path | None:
    """What each run's accuracy cost on the wire: one point per run, coloured by bits."""
    if not runs:
        return None
    colour = _cycle(sorted({r.config["bits"] for r in runs}, reverse=True), COLOURS)
    fig, ax = plt.subplots(figsize=(6.5, 4.5), dpi=120)
    for (bits, averaging), group in _group(runs, lambda r: r.variant, _variant_order).items():
        ax.scatter(
            [r.total_bytes for r in group],
            [r.final_accuracy for r in group],
            color=colour[bits],
            marker="o" if averaging else "x",
            label=row_label((bits, averaging)),
        )
    ax.set_xscale("log")
    _finish(ax, "final test accuracy (%)", "accuracy vs traffic", "bytes up + down (total)")
    return _save(fig, path)


def write_figures(runs: list[Run], out: Path) -> list[Path]:
    """Every figure that has something to show; FedAvg only where the paper's figure is."""
    completed = [r for r in runs if r.status == "completed"]
    fedavg = [r for r in completed if r.algorithm == "fedavg"]
    written = []
    for dataset, members in _group(fedavg, lambda r: r.config["dataset"]).items():
        written.append(plot_curves(members, dataset, out / f"curves_{dataset}.png"))
        written.append(plot_overfit(members, dataset, out / f"overfit_{dataset}.png"))
        written.append(plot_drift(members, dataset, out / f"drift_{dataset}.png"))
    written.append(plot_accuracy_vs_bytes(completed, out / "accuracy_vs_bytes.png"))
    return [p for p in written if p is not None]
