"""Shared test settings: tiny, seeded runs on the bundled digits data."""

from __future__ import annotations

import pytest
import torch

# Tests compare exact numbers between runs; pin the thread count so they do not
# depend on how many cores the machine has.
torch.set_num_threads(1)

TINY = dict(dataset="digits", model="mlp", clients=6, participation=0.5, rounds=3, batch_size=32)


@pytest.fixture
def tiny() -> dict:
    return dict(TINY)
