"""Where and how a benchmark's numbers were made; every results file carries this.

Benchmarks run as scripts from the repository root (``python benchmarks/NAME.py``), so
this module is imported by its plain name.
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path

import torch


def provenance(device: torch.device | str = "cpu") -> dict[str, str]:
    """The device measured, torch's version, today's date and the command that ran."""
    if torch.device(device).type == "cuda":
        name = torch.cuda.get_device_name()
    else:
        name = f"CPU {platform.machine()}, {os.cpu_count()} cores"
    return {
        "device": name,
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
        "command": " ".join([f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]]),
    }
