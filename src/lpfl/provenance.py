"""What made a result: the device, the software and its exact version, the command, the time.

A results file copied off a GPU machine, or read a month later, has to say itself where
its numbers came from: the table the report builds cites it, and a number whose
device and code version are unknown cannot be compared with another.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import torch

from . import __version__

_PACKAGE = Path(__file__).resolve().parent


def device_name(device: torch.device | str) -> str:
    """The GPU's name, or the CPU's architecture and core count; a setting that names no
    device yet (``auto``, in a record made before the run resolved it) as it is."""
    try:
        device = torch.device(device)
    except RuntimeError:
        return str(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.machine()}, {os.cpu_count()} cores"


def now() -> str:
    """The current UTC time, to the second, in ISO 8601."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


@cache
def source_commit() -> str | None:
    """The git commit lpfl runs from, with "+modified" when tracked files differ from it.

    None when lpfl is not running from its own git checkout (an installed wheel, a
    copied tree); a checkout that merely encloses an installed copy does not count.
    A copied tree (what a remote GPU machine gets) can be named by its sender in
    ``$LPFL_COMMIT``, which is taken as is.
    """
    if named := os.environ.get("LPFL_COMMIT"):
        return named

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(_PACKAGE), *args], capture_output=True, text=True, timeout=10
        )
        if done.returncode:
            raise OSError(done.stderr.strip())
        return done.stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() / "src" / "lpfl" != _PACKAGE:
            return None
        commit = git("rev-parse", "--short=12", "HEAD")
        modified = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+modified" if modified else "")


def command() -> str:
    """The command line of this process, with the program named by its file name."""
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else ""


def session(device: torch.device | str) -> dict[str, Any]:
    """Where and with what this process computes results, from now on."""
    return {
        "started": now(),
        "device": device_name(device),
        "torch": torch.__version__,
        "lpfl": __version__,
        "commit": source_commit(),
        "python": platform.python_version(),
        "command": command(),
    }
