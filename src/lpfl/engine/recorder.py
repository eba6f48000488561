"""Writes results as the run goes, so a crash or divergence loses nothing already computed.

``results.json`` is rewritten atomically (temp file + rename) after every round;
``metrics.csv`` gets one flushed row per round.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

LAST_K = 5  # the paper reports mean ± std of the last 5 evaluated rounds


@dataclass(frozen=True)
class RoundMetrics:
    round: int
    test_accuracy: float | None  # None on rounds that were not evaluated
    test_loss: float | None
    train_loss: float
    seconds: float


def summarize(rounds: list[RoundMetrics], last: int = LAST_K) -> dict[str, Any]:
    accs = [r.test_accuracy for r in rounds if r.test_accuracy is not None][-last:]
    if not accs:
        return {"final_accuracy_mean": None, "final_accuracy_std": None, "evaluated_rounds": 0}
    return {
        "final_accuracy_mean": float(np.mean(accs)),
        "final_accuracy_std": float(np.std(accs)),
        "evaluated_rounds": len(accs),
    }


def _json_safe(value: Any) -> Any:
    """NaN is not JSON; write it as null so every reader can parse the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Recorder:
    def __init__(self, out: str | os.PathLike | None, config: dict[str, Any]) -> None:
        self.rounds: list[RoundMetrics] = []
        self.config = config
        self.status = "running"
        self.error: str | None = None
        self.dir = Path(out) if out else None
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._csv = open(self.dir / "metrics.csv", "w", newline="")  # noqa: SIM115
            self._writer = csv.DictWriter(
                self._csv, fieldnames=list(RoundMetrics.__dataclass_fields__)
            )
            self._writer.writeheader()
            self._write_json()

    def record(self, metrics: RoundMetrics) -> None:
        self.rounds.append(metrics)
        if self.dir is not None:
            self._writer.writerow({k: _json_safe(v) for k, v in asdict(metrics).items()})
            self._csv.flush()
            self._write_json()

    def finish(self, status: str = "completed", error: str | None = None) -> None:
        self.status, self.error = status, error
        if self.dir is not None:
            self._write_json()
            self._csv.close()

    def summary(self) -> dict[str, Any]:
        return summarize(self.rounds)

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "config": self.config,
            "status": self.status,
            "rounds": [{k: _json_safe(v) for k, v in asdict(r).items()} for r in self.rounds],
            "summary": self.summary(),
        }
        if self.error:
            result["error"] = self.error
        return result

    def _write_json(self) -> None:
        assert self.dir is not None
        tmp = self.dir / "results.json.tmp"
        tmp.write_text(json.dumps(self.as_dict(), indent=1) + "\n")
        os.replace(tmp, self.dir / "results.json")
