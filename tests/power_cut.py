"""A crash in the middle of a run, for the resume checks (``test_resume.py`` on the CPU,
``gpu_resume_check.py`` on a GPU): round N's evaluation raises KeyboardInterrupt, as a
power cut there would, after round N-1's checkpoint and records are written."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import lpfl.engine.setup as setup


@contextmanager
def power_cut_in_round(n: int) -> Iterator[None]:
    real, calls = setup.evaluate, {"n": 0}

    def dies_in_round_n(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt("power cut")
        return real(*args, **kwargs)

    setup.evaluate = dies_in_round_n
    try:
        yield
    finally:
        setup.evaluate = real
