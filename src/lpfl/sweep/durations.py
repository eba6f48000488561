"""How long a sweep's next run will take, for a time-boxed machine to decide whether to
start it: a run cut off by the box's end is lost work.

A process that has run nothing yet has no measurement of its own, yet it is often the
one with the least time (a GPU slot of a few minutes). The folder it writes to holds
the runs of earlier slots, and each results.json names the device its rounds ran on
and when they started and finished. So a run's duration is judged, in this order, by
the longest run of the same kind this process has made, by the most recent finished
run of the same kind in the folder that ran in one session on this device (the newest
code's speed), and for a kind not seen yet by the longest run of any kind known, this
process's or the folder's on this device (a first FedFTG run, say, is no quicker than
the FedAvg runs before it: judging it by nothing would start it in any window).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# What a run's duration depends on, besides the device and the code.
KIND = ("dataset", "model", "algorithm", "bits", "rounds", "clients", "participation",
        "local_epochs", "batch_size", "eval_every")  # fmt: skip


def kind(config: Mapping[str, Any]) -> tuple:
    return tuple(config.get(k) for k in KIND)


def _seconds(session: Mapping[str, Any]) -> float | None:
    try:
        started = datetime.datetime.fromisoformat(session["started"])
        finished = datetime.datetime.fromisoformat(session["finished"])
    except (KeyError, TypeError, ValueError):
        return None
    return (finished - started).total_seconds()


class Durations:
    def __init__(self, out: Path, device: str) -> None:
        """The finished runs in ``out`` whose rounds all ran in one session on ``device``."""
        found: dict[tuple, tuple[str, float]] = {}  # kind: (finished, seconds), the newest
        for path in out.glob("*/results.json"):
            try:
                results = json.loads(path.read_text())
                sessions, config = results["sessions"], results["config"]
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not a run lpfl can read a duration from: judge without it
            if len(sessions) != 1 or sessions[0].get("device") != device:
                continue
            seconds = _seconds(sessions[0])
            if seconds is None:
                continue
            key, finished = kind(config), sessions[0]["finished"]
            if key not in found or finished > found[key][0]:
                found[key] = (finished, seconds)
        self.earlier = {key: seconds for key, (_, seconds) in found.items()}
        self.here: dict[tuple, float] = {}

    def record(self, config: Mapping[str, Any], seconds: float) -> None:
        """A run this process has just made."""
        key = kind(config)
        self.here[key] = max(self.here.get(key, 0.0), seconds)

    def expect(self, config: Mapping[str, Any]) -> float:
        """Seconds a run of ``config`` is expected to take (0 when nothing says)."""
        key = kind(config)
        if key in self.here:
            return self.here[key]
        if key in self.earlier:
            return self.earlier[key]
        return max([*self.here.values(), *self.earlier.values()], default=0.0)
