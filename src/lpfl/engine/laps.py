"""Seconds per phase of a round, for the record of where a round's time goes."""

from __future__ import annotations

import time


class Laps:
    """A stopwatch whose laps are named: ``lap(phase)`` adds the time since the last lap
    (or the start) to that phase, so phases may recur (the server works at both ends
    of a round) and the laps sum to the time up to the last one."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self.last
        self.last = now

    def total(self) -> float:
        return time.perf_counter() - self.start
