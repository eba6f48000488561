"""Finished runs read back from their results.json, whichever tool or sweep wrote them."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ConfigError
from ..engine.recorder import LAST_K
from ..sweep import FINISHED, run_hash

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    path: Path  # the results.json it came from
    config: dict[str, Any]
    status: str
    rounds: list[dict[str, Any]]
    summary: dict[str, Any]
    data: dict[str, Any] | None = None  # sample counts; absent from older results files
    sessions: tuple[dict[str, Any], ...] = ()  # where its rounds ran; absent before 2026-11-27

    @property
    def algorithm(self) -> str:
        """Runs from before the algorithm setting existed could only be FedAvg."""
        return self.config.get("algorithm", "fedavg")

    @property
    def averaging(self) -> bool:
        return self.config["moving_average"] > 0

    @property
    def variant(self) -> tuple[int, bool]:
        """Table 1's row: (bits, with server moving average)."""
        return self.config["bits"], self.averaging

    @property
    def final_accuracy(self) -> float | None:
        """In %; the paper's statistic, the mean of the last 5 evaluated rounds."""
        acc = self.summary.get("final_accuracy_mean")
        return None if acc is None else 100 * acc

    @property
    def mean_drift(self) -> float | None:
        """The client drift (``engine/drift.py``) averaged over the rounds that record it."""
        drifts = [r["client_drift"] for r in self.rounds if r.get("client_drift") is not None]
        return float(np.mean(drifts)) if drifts else None

    @property
    def final_quantized_accuracy(self) -> float | None:
        """In %, for runs made with --eval-quantized: the same statistic, activation rounding on."""
        accs = [
            r["quantized_test_accuracy"]
            for r in self.rounds
            if r.get("quantized_test_accuracy") is not None
        ][-LAST_K:]
        return 100 * float(np.mean(accs)) if accs else None

    @property
    def subset(self) -> int | None:
        """Training samples, where the run had fewer than the dataset's official release."""
        data = self.data or {}
        full, used = data.get("full_train"), data.get("train_samples")
        return used if full and used is not None and used < full else None

    @property
    def total_bytes(self) -> int:
        return self.summary["bytes_up_total"] + self.summary["bytes_down_total"]


def _read(path: Path) -> Run | None:
    try:
        data = json.loads(path.read_text())
        return Run(
            path, data["config"], data["status"], data["rounds"], data["summary"],
            data.get("data"), tuple(data.get("sessions", ())),
        )  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("skipping %s: not a readable results file (%s)", path, exc)
        return None


def load_runs(dirs: Iterable[str | os.PathLike]) -> list[Run]:
    """Every finished run under ``dirs``, each experiment once.

    Unfinished runs (running, failed, a sweep's ``.partial`` folder) are left out; so is a
    second copy of a run with the same settings hash, so that folders given twice or
    copied between machines do not count one seed twice.
    """
    paths: set[Path] = set()
    for d in map(Path, dirs):
        if not d.is_dir():
            raise ConfigError(f"report: no such folder {os.fspath(d)!r}")
        paths.update(p.resolve() for p in d.rglob("results.json"))
    runs: dict[str, Run] = {}
    unfinished = 0
    for path in sorted(paths):
        run = _read(path)
        if run is None:
            continue
        if run.status not in FINISHED:
            unfinished += 1
            continue
        key = run_hash(run.config)
        if key in runs:
            logger.warning("skipping %s: same settings as %s", path, runs[key].path)
            continue
        runs[key] = run
    if unfinished:
        logger.warning("left out %d unfinished run(s)", unfinished)
    return list(runs.values())


def made_on(runs: Iterable[Run]) -> list[str]:
    """One line per (device, lpfl commit) the runs' rounds were computed with: how many
    runs, on which dates. A resumed run counts under every machine it ran on."""
    machines: dict[tuple[str, str], tuple[set[Path], set[str]]] = {}
    unrecorded = 0
    for run in runs:
        unrecorded += not run.sessions
        for session in run.sessions:
            key = (session.get("device") or "?", session.get("commit") or "unknown commit")
            paths, dates = machines.setdefault(key, (set(), set()))
            paths.add(run.path)
            dates.add(str(session.get("started", "?"))[:10])
    lines = [
        f"{len(paths)} run(s) on {device}, lpfl {commit}, {', '.join(sorted(dates))}"
        for (device, commit), (paths, dates) in sorted(machines.items())
    ]
    if unrecorded:
        lines.append(
            f"{unrecorded} run(s) whose results.json predates the record of where runs "
            "ran: see the notes kept beside them"
        )
    return lines
