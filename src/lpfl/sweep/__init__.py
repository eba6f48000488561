"""Grids of runs from one TOML file, each run stored under the hash of its settings."""

from .identity import NOT_IDENTITY, identity, run_hash
from .runner import FINISHED, Tally, finished_status, point_state, run_sweep
from .spec import Point, SweepSpec, load_spec

__all__ = [
    "FINISHED",
    "NOT_IDENTITY",
    "Point",
    "SweepSpec",
    "Tally",
    "finished_status",
    "identity",
    "load_spec",
    "point_state",
    "run_hash",
    "run_sweep",
]
