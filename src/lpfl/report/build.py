"""``lpfl report``: every finished run under some folders, turned into Table 1 and the figures."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..config import ConfigError
from .claims import write_claims
from .figures import write_figures
from .methods import build_methods_table, has_methods, write_methods_table
from .runs import load_runs
from .table1 import build_table1, write_table1
from .timing import write_timing


def default_report_dir(dirs: Sequence[str | os.PathLike]) -> Path:
    """``<first DIR>/report``: the report sits beside the runs it describes."""
    return Path(dirs[0]) / "report"


def write_report(dirs: Sequence[str | os.PathLike], out: str | os.PathLike) -> list[Path]:
    """Write table1.{md,csv}, the figures, timing.md, claims.{md,csv} (where rows share
    seeds) and, where other methods ran, methods.{md,csv} into ``out``; returns the
    files written."""
    runs = load_runs(dirs)
    if not runs:
        raise ConfigError(f"report: no finished run under {', '.join(map(str, dirs))}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = write_table1(build_table1(runs), out) + write_figures(runs, out)
    written += write_timing(runs, out) + write_claims(runs, out)
    if has_methods(runs):
        written += write_methods_table(build_methods_table(runs), out)
    return written
