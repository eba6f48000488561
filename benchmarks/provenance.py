"""Where and how a benchmark's numbers were made; every results file carries this.

Benchmarks run as scripts from the repository root (``python benchmarks/NAME.py``), so
this module is imported by its plain name.
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

import torch

from lpfl.provenance import device_name, source_commit


def provenance(device: torch.device | str = "cpu") -> dict[str, str | None]:
    """The device measured, torch's version, lpfl's commit, today's date and the command."""
    return {
        "device": device_name(device),
        "commit": source_commit(),
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
        "command": " ".join([f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]]),
    }
