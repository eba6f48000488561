"""Shared test settings: tiny, seeded runs on the bundled digits data."""

from __future__ import annotations

import signal

import pytest
import torch

# Tests compare exact numbers between runs; pin the thread count so they do not
# depend on how many cores the machine has.
torch.set_num_threads(1)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """A SIGTERM (``timeout``, ``kill``, a CI runner giving up) stops the run as Ctrl-C
    does, so fixtures are torn down: by default it ends the process on the spot, and the
    SuperLink and SuperNodes of the deployment tests were left running."""
    signal.signal(signal.SIGTERM, _interrupted)


TINY = dict(dataset="digits", model="mlp", clients=6, participation=0.5, rounds=3, batch_size=32)


@pytest.fixture
def tiny() -> dict:
    return dict(TINY)
