"""The paper's Table 1 rebuilt from our runs, with the paper's number and the gap beside each cell.

Rows are (bits, server moving average) and columns (α, dataset), in the paper's order;
settings the paper does not have (other datasets, α or bit widths) get rows or columns
after its own, so no FedAvg run goes unreported. A cell's value is the mean ± sample
std (n − 1) over seeds of each run's final accuracy (itself the mean of its last 5
evaluated rounds, the paper's statistic). Diverged runs are counted, not averaged:
their last rounds say nothing about the accuracy the setting reaches.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..sweep import identity
from .paper import ALPHAS, DATASETS, SETTING, VARIANTS, off_setting, paper_cell
from .runs import Run, made_on

logger = logging.getLogger(__name__)

Row = tuple[int, bool]  # (bits, averaging)
Column = tuple[float, str]  # (alpha, dataset)
Paper = tuple[float, float | None]  # the paper's mean and, where it gives one, its ± (%)
MISSING = "—"
# Issue 6's test of a reproduced cell: within the paper's ± or 2 points, whichever is larger.
AGREE_POINTS = 2.0
CSV_HEADER = (
    "row", "bits", "averaging", "dataset", "alpha", "n", "diverged", "mean", "std", "paper", "diff",
    "quantized_eval_mean", "subset_train_samples", "paper_std", "agrees", "per_seed",
    "other_setting",
)  # fmt: skip


def row_label(row: Row) -> str:
    return f"{row[0]}b {'avg' if row[1] else 'no'}"


def column_label(column: Column) -> str:
    return f"{column[1]} α={column[0]:g}"


@dataclass(frozen=True)
class Cell:
    accuracies: tuple[float, ...]  # %, one per completed run (seed)
    diverged: int
    paper: float | None
    quantized: tuple[float, ...] = ()  # %, the runs evaluated with activation rounding on too
    subset: int | None = None  # training samples, where runs had only part of the dataset
    paper_std: float | None = None  # the paper's ± for this cell, where it gives one
    seeds: tuple[int, ...] = ()  # each accuracy's seed, where known
    other_setting: tuple[str, ...] = ()  # where its runs leave the paper's setup (``off_setting``)

    @property
    def quantized_mean(self) -> float | None:
        return float(np.mean(self.quantized)) if self.quantized else None

    @property
    def n(self) -> int:
        return len(self.accuracies)

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.accuracies)) if self.accuracies else None

    @property
    def std(self) -> float | None:
        """Sample std: with 3 seeds the population std would understate the spread."""
        return float(np.std(self.accuracies, ddof=1)) if self.n > 1 else None

    @property
    def diff(self) -> float | None:
        """Ours − paper; none for a subset run or another setup: not the paper's experiment."""
        if self.mean is None or self.paper is None or self.subset is not None:
            return None
        if self.other_setting:
            return None
        return self.mean - self.paper

    @property
    def agrees(self) -> bool | None:
        """Within the paper's ± or ``AGREE_POINTS`` of its mean; None where not comparable."""
        if self.diff is None:
            return None
        return abs(self.diff) <= max(AGREE_POINTS, self.paper_std or 0.0)

    def text(self) -> str:
        if self.subset is not None:  # not the paper's setting: no comparison with its value
            ours = "" if self.mean is None else f": {self.mean:.1f} (n={self.n})"
            return f"needs full data (ran on {self.subset} training samples{ours})"
        counts = [f"n={self.n}"] if self.n else []
        counts += [f"{self.diverged} diverged"] if self.diverged else []
        ours = MISSING if self.mean is None else f"{self.mean:.1f}"
        ours += "" if self.std is None else f" ± {self.std:.1f}"
        ours += f" ({', '.join(counts)})" if counts else ""
        parts = [ours]
        if self.quantized_mean is not None:  # the reference's way of evaluating, beside ours
            parts += [f"act-rounded eval {self.quantized_mean:.1f}"]
        if self.paper is not None:
            parts += [f"paper {self.paper:g}"]
            parts += ["other setup"] if self.other_setting and self.mean is not None else []
        if self.diff is not None:
            parts += [f"Δ {self.diff:+.1f} {'≈' if self.agrees else '≠'}"]
        return " · ".join(parts)


@dataclass(frozen=True)
class Grid:
    """A table of cells: rows of settings against (α, dataset) columns."""

    rows: list[Any]
    columns: list[Column]
    cells: dict[tuple[Any, Column], Cell]
    notes: list[str]  # cells that pool runs with settings other than the seed differing
    sources: list[str]  # the devices and lpfl commits the runs were made with


Table1 = Grid


def ordered(paper: Sequence, found: Iterable) -> list:
    return list(paper) + sorted(set(found) - set(paper))


def _pooling_note(where: str, runs: list[Run]) -> str | None:
    """Seeds are meant to be the only difference inside a cell; say so when they are not."""
    settings = [identity(r.config) | {"seed": None} for r in runs]
    keys = sorted({k for s in settings for k in s})
    differ = [k for k in keys if len({json.dumps(s.get(k)) for s in settings}) > 1]
    if not differ:
        return None
    return f"{where} pools runs differing in {', '.join(differ)}"


def _make_cell(members: list[Run], paper: Paper | None) -> Cell:
    """One table cell from the runs (seeds) of one setting: completed runs averaged,
    diverged ones counted."""
    completed = [r for r in members if r.status == "completed"]
    measured = sorted(
        (r.config.get("seed", -1), r.final_accuracy)
        for r in completed
        if r.final_accuracy is not None
    )
    quantized = [r.final_quantized_accuracy for r in completed]
    subsets = [r.subset for r in members if r.subset is not None]
    other = sorted({item for r in members for item in off_setting(r.config)})
    return Cell(
        tuple(a for _, a in measured),
        sum(r.status == "diverged" for r in members),
        None if paper is None else paper[0],
        tuple(q for q in quantized if q is not None),
        min(subsets) if subsets else None,
        None if paper is None else paper[1],
        tuple(seed for seed, _ in measured),
        tuple(other),
    )


def build_table1(runs: Iterable[Run]) -> Table1:
    groups: dict[tuple[Row, Column], list[Run]] = {}
    for run in runs:
        if run.algorithm == "fedavg":
            column = (run.config["alpha"], run.config["dataset"])
            groups.setdefault((run.variant, column), []).append(run)
    paper_columns = [(a, d) for a in ALPHAS for d in DATASETS]
    rows = ordered(VARIANTS, (row for row, _ in groups))
    columns = ordered(paper_columns, (col for _, col in groups))
    return fill_grid(rows, columns, groups, lambda row, col: paper_cell(col[1], col[0], *row),
                     row_label)  # fmt: skip


def fill_grid(
    rows: list,
    columns: list[Column],
    groups: dict[tuple[Any, Column], list[Run]],
    paper: Callable[[Any, Column], Paper | None],
    label: Callable[[Any], str],
) -> Grid:
    """Every (row, column) cell from its runs, with the paper's value (and ±, where it
    gives one) and pooling warnings."""
    cells, notes = {}, []
    for row in rows:
        for col in columns:
            members = groups.get((row, col), [])
            cells[row, col] = _make_cell(members, paper(row, col))
            where = f"{label(row)}, {column_label(col)}"
            note = _pooling_note(where, members) if members else None
            notes += [note] if note else []
    return Grid(rows, columns, cells, notes, made_on(r for runs in groups.values() for r in runs))


def grid_markdown(grid: Grid, intro: list[str], label: Callable[[Any], str]) -> str:
    """``intro`` (a title and a legend), then the grid as a Markdown table and its warnings."""
    head = ["", *map(column_label, grid.columns)]
    lines = [*intro, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in grid.rows:
        cells = [grid.cells[row, col].text() for col in grid.columns]
        lines.append("| " + " | ".join([label(row), *cells]) + " |")
    lines += _agreement(grid, label) + _other_setups(grid)
    if grid.sources:
        lines += ["", "Made with:", *(f"- {source}" for source in grid.sources)]
    if grid.notes:
        lines += ["", "Warnings:", *(f"- {note}" for note in grid.notes)]
    return "\n".join(lines) + "\n"


def _agreement(grid: Grid, label: Callable[[Any], str]) -> list[str]:
    """How many measured cells agree with the paper, and each that does not."""
    compared = [(row, col) for row in grid.rows for col in grid.columns
                if grid.cells[row, col].agrees is not None]  # fmt: skip
    if not compared:
        return []
    differ = [(row, col) for row, col in compared if not grid.cells[row, col].agrees]
    lines = [
        "",
        f"Agreement with the paper (≈: |ours − paper| ≤ the paper's ± or {AGREE_POINTS:g} "
        f"points, whichever is larger; ≠: not): {len(compared) - len(differ)} of "
        f"{len(compared)} measured cells agree.",
    ]
    for row, col in differ:
        cell = grid.cells[row, col]
        lines.append(f"- differs: {label(row)}, {column_label(col)}: {cell.mean:.1f} "
                     f"(n={cell.n}) vs {cell.paper:g} (Δ {cell.diff:+.1f})")  # fmt: skip
    return lines


def _other_setups(grid: Grid) -> list[str]:
    """Which runs were not the paper's experiment, so that no reader takes the two
    numbers of such a cell for a reproduction."""
    other = sorted({", ".join(c.other_setting) for c in grid.cells.values()
                    if c.other_setting and c.paper is not None and c.mean is not None})  # fmt: skip
    if not other:
        return []
    paper = ", ".join(f"{k}={v}" for k, v in SETTING.items())
    return [
        "",
        f'"other setup": runs that leave the paper\'s ({paper}), in: {"; ".join(other)}. '
        "Their cells show the paper's number for orientation, with no difference or verdict.",
    ]


def _markdown(table: Table1) -> str:
    intro = [
        "# Table 1: FedAvg test accuracy (%)",
        "",
        "Each cell: mean ± sample std over seeds of each run's final accuracy (mean of its",
        "last 5 evaluated rounds), n = number of seeds, the paper's value and, for runs in",
        "the paper's setup, the difference (ours − paper). Rows: bits, with (avg) or without",
        "(no) the server moving average. "
        f'{MISSING}: no run. Where runs were made with --eval-quantized, "act-rounded eval"',
        "gives the global model's accuracy with the clients' activation rounding on, as the",
        "reference evaluates its rows without averaging. Runs on a subset of a dataset",
        '(fewer training samples than its official release) read "needs full data".',
    ]
    return grid_markdown(table, intro, row_label)


def number(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def write_grid(
    table: Grid,
    out: Path,
    name: str,
    markdown: str,
    header: Sequence[str],
    line: Callable[[Any, Column, Cell], list],
) -> list[Path]:
    """NAME.md for reading; NAME.csv, one ``line(row, column, cell)`` per cell, for
    computing on. The table's notes (pooled runs and the like) go to the log."""
    md, tidy = out / f"{name}.md", out / f"{name}.csv"
    md.write_text(markdown)
    with tidy.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(
            line(row, col, table.cells[row, col]) for row in table.rows for col in table.columns
        )
    for note in table.notes:
        logger.warning("%s: %s", name, note)
    return [md, tidy]


def subset_field(cell: Cell) -> int | str:
    return "" if cell.subset is None else cell.subset


def agrees_field(cell: Cell) -> int | str:
    return "" if cell.agrees is None else int(cell.agrees)


def seeds_field(cell: Cell) -> str:
    """Each run's accuracy by seed, ``seed:accuracy;...``: with a few seeds the spread
    says more than a std (CIFAR-10 at alpha 0.04 gave 54.2 and 60.0)."""
    return ";".join(f"{s}:{a:.2f}" for s, a in zip(cell.seeds, cell.accuracies, strict=True))


def _csv_line(row: Row, col: Column, cell: Cell) -> list:
    numbers = (cell.mean, cell.std, cell.paper, cell.diff, cell.quantized_mean)
    return [row_label(row), row[0], int(row[1]), col[1], col[0], cell.n, cell.diverged,
            *map(number, numbers), subset_field(cell), number(cell.paper_std),
            agrees_field(cell), seeds_field(cell), ";".join(cell.other_setting)]  # fmt: skip


def write_table1(table: Table1, out: Path) -> list[Path]:
    """table1.md for reading; table1.csv, one line per cell, for computing on."""
    return write_grid(table, out, "table1", _markdown(table), CSV_HEADER, _csv_line)
