"""Where the runs' time went: per device, lpfl commit and kind of run, the median round
and its phases.

The GPU slots that make the tables are short, so a sweep plans by how long runs take
(``sweep/durations.py``) and speed work goes where the seconds are. Every run records
each round's seconds, and since 2026-11-28 also by phase (client training, encoding
the uploads, the server, evaluation) and its start-up (``engine/recorder.py``); this
collects them into one table. Runs from before the phases were recorded show their
round time alone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..engine.recorder import PHASES
from .runs import Run

HEADER = ("device", "lpfl", "dataset", "model", "algorithm", "bits", "avg", "runs", "s/round",
          *(f"{p} s" for p in PHASES), "start-up s")  # fmt: skip


def _one(run: Run, field: str) -> str:
    """The session field all of a run's sessions share (its device, its commit)."""
    values = {s.get(field) or "?" for s in run.sessions}
    return values.pop() if len(values) == 1 else "several" if values else "not recorded"


def _median(values: list[float]) -> str:
    return f"{float(np.median(values)):.3f}" if values else "—"


def timing_rows(runs: Iterable[Run]) -> list[tuple[str, ...]]:
    """One row per (device, commit, dataset, model, algorithm, bits, averaging): medians
    over every round of its runs but each run's first (which compiles and captures)."""
    groups: dict[tuple, list[Run]] = defaultdict(list)
    for run in runs:
        c = run.config
        key = (_one(run, "device"), _one(run, "commit"), c["dataset"], c["model"],
               run.algorithm, c["bits"], run.averaging)  # fmt: skip
        groups[key].append(run)
    rows = []
    for key, members in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        rounds = [r for run in members for r in run.rounds[1:]]
        phases = [
            _median([r[f"{p}_seconds"] for r in rounds if r.get(f"{p}_seconds") is not None])
            for p in PHASES
        ]
        startup = [
            s["data_seconds"] + s["setup_seconds"]
            for run in members
            for s in run.sessions
            if "setup_seconds" in s
        ]
        device, commit, dataset, model, algorithm, bits, averaging = key
        rows.append((
            device, commit, dataset, model, algorithm, str(bits), "yes" if averaging else "no",
            str(len(members)), _median([r["seconds"] for r in rounds]), *phases,
            _median(startup),
        ))  # fmt: skip
    return rows


def write_timing(runs: Iterable[Run], out: Path) -> list[Path]:
    """timing.md in ``out``; nothing if no run has rounds to time."""
    rows = timing_rows(runs)
    if not rows:
        return []
    lines = [
        "# Where the runs' time went",
        "",
        "Median seconds over every round but each run's first; a phase ends by waiting "
        "for the device, so on a GPU each is that phase's own time. Start-up: reading "
        "the data and setting up, before the first round (Python's start and imports "
        "not included). — where the runs predate the record.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
    path = out / "timing.md"
    path.write_text("\n".join(lines) + "\n")
    return [path]
