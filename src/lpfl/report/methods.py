"""The paper's other-methods table rebuilt from our runs: each method at 8 bits + average and
at 32 bits without, per (α, dataset), with the paper's number and the gap beside each cell.

Rows are (method, bits, averaging): FedAvg first as the common baseline (its paper
values are Table 1's), then the paper's methods in its order, then any other setting
found (an algorithm plugin's runs, with no paper value). Cells are built exactly as
Table 1's (see ``table1``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..algorithms import SUBMODEL_ALGORITHMS
from .paper import ALPHAS, DATASETS, METHODS, paper_method_value
from .runs import Run
from .table1 import (
    MISSING,
    Cell,
    Column,
    Grid,
    agrees_field,
    fill_grid,
    grid_markdown,
    number,
    ordered,
    seeds_field,
    subset_field,
    write_grid,
)

Row = tuple[str, int, bool]  # (method, bits, averaging)
NAMES = {"fedavg": "FedAvg", "abavg": "ABAvg", "fedprox": "FedProx", "fedgen": "FedGen",
         "fedftg": "FedFTG"}  # fmt: skip
PAPER_ROWS = [(m, *v) for m in ("fedavg", *METHODS) for v in ((8, True), (32, False))]
CSV_HEADER = ("method", "bits", "averaging", "dataset", "alpha", "n", "diverged", "mean", "std",
              "paper", "diff", "subset_train_samples", "agrees", "per_seed",
              "other_setting")  # fmt: skip


def row_label(row: Row) -> str:
    return f"{NAMES.get(row[0], row[0])} {row[1]}b {'avg' if row[2] else 'no'}"


def has_methods(runs: Iterable[Run]) -> bool:
    """Whether any run is of a method besides FedAvg that the table covers: the paper's
    and algorithm plugins (HeteroFL and SplitMix have the cost table)."""
    return any(r.algorithm not in ("fedavg", *SUBMODEL_ALGORITHMS) for r in runs)


def build_methods_table(runs: Iterable[Run]) -> Grid:
    groups: dict[tuple[Row, Column], list[Run]] = {}
    for run in runs:
        if run.algorithm not in SUBMODEL_ALGORITHMS:
            row = (run.algorithm, *run.variant)
            column = (run.config["alpha"], run.config["dataset"])
            groups.setdefault((row, column), []).append(run)
    found_columns = {col for _, col in groups}
    columns = [c for c in ordered([(a, d) for a in ALPHAS for d in DATASETS], found_columns)
               if c in found_columns]  # fmt: skip
    rows = ordered(PAPER_ROWS, (row for row, _ in groups))
    return fill_grid(rows, columns, groups,
                     lambda row, col: _paper(row, col), row_label)  # fmt: skip


def _paper(row: Row, col: Column) -> tuple[float, None] | None:
    """The paper's value for a cell; its other-methods table gives no ±."""
    value = paper_method_value(row[0], col[1], col[0], *row[1:])
    return None if value is None else (value, None)


def _markdown(table: Grid) -> str:
    intro = [
        "# Other FL methods: test accuracy (%)",
        "",
        "Each cell as in Table 1: mean ± sample std over seeds of each run's final accuracy",
        "(mean of its last 5 evaluated rounds), n = seeds, the paper's value (its table of",
        "other methods; FedAvg's from Table 1) and, for runs in the paper's setup, the",
        "difference (ours − paper). The paper gives each method at 8 bits with the moving",
        "average and 32 bits without.",
        f"{MISSING}: no run.",
    ]
    return grid_markdown(table, intro, row_label)


def _csv_line(row: Row, col: Column, cell: Cell) -> list:
    numbers = (cell.mean, cell.std, cell.paper, cell.diff)
    return [*row[:2], int(row[2]), col[1], col[0], cell.n, cell.diverged,
            *map(number, numbers), subset_field(cell), agrees_field(cell),
            seeds_field(cell), ";".join(cell.other_setting)]  # fmt: skip


def write_methods_table(table: Grid, out: Path) -> list[Path]:
    """methods.md for reading; methods.csv, one line per cell, for computing on."""
    return write_grid(table, out, "methods", _markdown(table), CSV_HEADER, _csv_line)
