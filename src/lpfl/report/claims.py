"""The paper's claims tested on our runs, each seed against itself.

Table 1 gives each cell's mean ± std over seeds, and with three seeds those are wide:
the seed sets the split, the initial weights, the client sampling and the rounding
noise, and at alpha 0.04 one cell's seeds span six points. Two rows run with the same
seed share the split, the initial weights and every round's client sampling (batch
order and rounding noise come from a generator the rows draw from differently), so
their difference seed by seed carries less noise than the difference of two means.
For each claim and each setting this pairs the runs that differ only in bits and
averaging and gives the per-seed differences, their mean ± std, how many seeds favour
the claim's first row, and the paper's difference of its two cell means beside them.
"""

from __future__ import annotations

import csv
import json
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..sweep.identity import identity
from .paper import off_setting, paper_value
from .runs import Run

Row = tuple[int, bool]  # (bits, server moving average)
CLAIMS: tuple[tuple[Row, Row, str], ...] = (
    ((8, True), (32, False), "8 bits + average against 32-bit FedAvg: the paper's method"),
    ((8, True), (32, True), "8 bits against 32 bits, both with the average: the precision"),
    ((6, True), (32, True), "6 bits against 32 bits, both with the average"),
    ((8, True), (8, False), "8 bits with the average against without it: the average"),
)
CSV_HEADER = ("measure", "first", "second", "dataset", "alpha", "other_setting", "n", "mean",
              "std", "ahead", "per_seed", "paper")  # fmt: skip


@dataclass(frozen=True)
class Measure:
    name: str
    title: str  # what a section's heading starts with
    value: Callable[[Run], float | None]
    digits: int  # decimals shown in claims.md


MEASURES = (
    Measure("accuracy", "Accuracy", lambda run: run.final_accuracy, 1),
    # The paper argues low precision curbs client drift; its tables show accuracy only.
    Measure("drift", "Client drift", lambda run: run.mean_drift, 3),
)


@dataclass(frozen=True)
class Comparison:
    measure: str
    first: Row
    second: Row
    dataset: str
    alpha: float
    other_setting: tuple[str, ...]  # where the runs leave the paper's setup
    differences: dict[int, float]  # seed: first's accuracy minus second's, in points

    @property
    def mean(self) -> float:
        return statistics.mean(self.differences.values())

    @property
    def std(self) -> float | None:
        values = list(self.differences.values())
        return statistics.stdev(values) if len(values) > 1 else None

    @property
    def ahead(self) -> int:
        return sum(d > 0 for d in self.differences.values())

    @property
    def paper(self) -> float | None:
        """The paper's difference of the two cell means, where it has both."""
        if self.measure != "accuracy":
            return None
        cells = [paper_value(self.dataset, self.alpha, *row) for row in (self.first, self.second)]
        return None if None in cells else cells[0] - cells[1]  # type: ignore[operator]


def _partners(run: Run) -> str:
    """What a run shares with the runs it is compared with: everything but its row."""
    shared = {k: v for k, v in identity(run.config).items() if k not in ("bits", "moving_average")}
    return json.dumps(shared, sort_keys=True)


def compare(runs: Iterable[Run]) -> list[Comparison]:
    """Every claim's comparisons that some seed's runs allow, per measure, FedAvg only."""
    rows: dict[str, dict[Row, Run]] = defaultdict(dict)
    for run in runs:
        if run.algorithm == "fedavg":
            rows[_partners(run)][run.variant] = run
    found: dict[tuple, dict[int, float]] = defaultdict(dict)
    for pair in rows.values():
        for measure in MEASURES:
            for first, second, _ in CLAIMS:
                a, b = pair.get(first), pair.get(second)
                values = (measure.value(a), measure.value(b)) if a and b else (None,)
                if None in values:
                    continue
                setting = {k: v for k, v in json.loads(_partners(a)).items() if k != "seed"}  # type: ignore[arg-type]
                key = (measure.name, first, second, json.dumps(setting, sort_keys=True))
                found[key][a.config["seed"]] = values[0] - values[1]  # type: ignore[union-attr,operator]
    comparisons = []
    for (measure_name, first, second, setting), differences in found.items():
        config = json.loads(setting)
        comparisons.append(
            Comparison(measure_name, first, second, config["dataset"], config["alpha"],
                       off_setting(config), dict(sorted(differences.items())))
        )  # fmt: skip
    claim = {(a, b): i for i, (a, b, _) in enumerate(CLAIMS)}
    measure = {m.name: i for i, m in enumerate(MEASURES)}
    return sorted(comparisons, key=lambda c: (measure[c.measure], claim[c.first, c.second],
                                              c.dataset, c.alpha, c.other_setting))  # fmt: skip


def _signed(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:+.{digits}f}"


def _markdown(comparisons: list[Comparison]) -> str:
    lines = [
        "# The paper's claims, seed by seed",
        "",
        "Each comparison pairs FedAvg runs that share every setting but bits and "
        "averaging, seed by seed: Δ is the first row's value minus the second's, then its "
        "mean ± std over seeds (n), the seeds where the first row is ahead (higher), each "
        "seed's Δ, and the paper's difference of its two Table-1 means. Accuracy: points, "
        "each run's mean over its last 5 evaluated rounds. Client drift: the share of a "
        "round's update energy that is disagreement between clients (0 to 1, "
        "`engine/drift.py`), each run's mean over its rounds; the paper gives no number "
        'for it. "other setup" names where the runs leave the paper\'s setup; there the '
        "paper's Δ is for orientation only.",
    ]
    for measure in MEASURES:
        for first, second, title in CLAIMS:
            members = [
                c for c in comparisons
                if (c.measure, c.first, c.second) == (measure.name, first, second)
            ]  # fmt: skip
            if members:
                lines += ["", f"## {measure.title}: {title}", "", *_table(members, measure)]
    return "\n".join(lines) + "\n"


def _table(members: list[Comparison], measure: Measure) -> list[str]:
    digits = measure.digits
    lines = ["| dataset | α | setup | n | Δ mean ± std | ahead | per seed | paper Δ |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for c in members:
        spread = "" if c.std is None else f" ± {c.std:.{digits}f}"
        seeds = ", ".join(f"{s}: {d:+.{digits}f}" for s, d in c.differences.items())
        setup = "paper" if not c.other_setting else "other: " + ", ".join(c.other_setting)
        lines.append(
            f"| {c.dataset} | {c.alpha:g} | {setup} | {len(c.differences)} | "
            f"{c.mean:+.{digits}f}{spread} | {c.ahead}/{len(c.differences)} | {seeds} | "
            f"{_signed(c.paper, digits)} |"
        )
    return lines


def write_claims(runs: Iterable[Run], out: Path) -> list[Path]:
    """claims.md and claims.csv in ``out``; nothing where no two rows share a seed."""
    comparisons = compare(runs)
    if not comparisons:
        return []
    md, tidy = out / "claims.md", out / "claims.csv"
    md.write_text(_markdown(comparisons))
    with tidy.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_HEADER)
        for c in comparisons:
            writer.writerow([
                c.measure,
                f"{c.first[0]}b {'avg' if c.first[1] else 'no'}",
                f"{c.second[0]}b {'avg' if c.second[1] else 'no'}",
                c.dataset, c.alpha, ";".join(c.other_setting), len(c.differences),
                f"{c.mean:.4f}", "" if c.std is None else f"{c.std:.4f}", c.ahead,
                ";".join(f"{s}:{d:.4f}" for s, d in c.differences.items()),
                "" if c.paper is None else f"{c.paper:.3f}",
            ])  # fmt: skip
    return [md, tidy]
