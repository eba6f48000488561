"""Everything a run needs to continue after a crash or timeout, saved between rounds.

Global model, per-client optimizer state, every RNG the round loop draws from, and
the metrics so far. Resuming from it gives the same rounds as a run that was never
interrupted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

FILENAME = "checkpoint.pt"


def save(directory: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write atomically: a crash mid-write leaves the previous checkpoint intact."""
    path = Path(directory) / FILENAME
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load(directory: str | os.PathLike, device: torch.device | str = "cpu") -> dict[str, Any]:
    path = Path(directory) / FILENAME
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint to resume from: {path} does not exist")
    # The file holds RNG states and nested dicts, not just tensors; it is our own output.
    return torch.load(path, map_location=device, weights_only=False)


def remove(directory: str | os.PathLike) -> None:
    """A finished run needs no checkpoint (it can be large: every client's optimizer state)."""
    (Path(directory) / FILENAME).unlink(missing_ok=True)
