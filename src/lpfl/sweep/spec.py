"""A sweep file: shared settings plus a grid, expanded into validated run configs.

```toml
name = "table1"                 # optional; default: the file's stem
out = "runs/table1"             # optional; default: runs/<name>
[base]                          # any RunConfig key, kebab-case or snake_case
dataset = "fmnist"
[grid]                          # cartesian product over these lists
alpha = [0.01, 0.04]
variant = [{bits = 8, moving-average = 0.9}, {bits = 32, moving-average = 0.0}]
```

A grid key whose values are tables is a *linked* axis: each table sets several keys
at once, so a hand-picked list of combinations needs no product-then-filter step; its
own name is only a label. Grid values override ``[base]``. Relative paths (``out``,
``data-dir``) are taken from the working directory, as ``lpfl run`` takes them.
"""

from __future__ import annotations

import itertools
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ConfigError, RunConfig, coerce_settings, make_config
from .identity import run_hash

TOP_LEVEL = frozenset({"name", "out", "base", "grid"})


def describe(varying: dict[str, Any]) -> str:
    """A point in a line, for progress bars and errors: only what sets it apart."""
    return " ".join(f"{k}={v}" for k, v in varying.items()) or "base"


@dataclass(frozen=True)
class Point:
    """One grid point: the settings that vary across the sweep, and the full config."""

    varying: dict[str, Any]
    config: RunConfig

    @property
    def hash(self) -> str:
        return run_hash(self.config.to_dict())

    @property
    def label(self) -> str:
        return describe(self.varying)


@dataclass(frozen=True)
class SweepSpec:
    name: str
    out: str
    base: dict[str, Any]
    axes: list[list[dict[str, Any]]]  # each axis: the settings each of its values applies

    def points(self) -> list[Point]:
        """Every point of the grid, all validated before the caller runs any of them."""
        points = []
        for combo in itertools.product(*self.axes):
            varying = {k: v for option in combo for k, v in option.items()}
            try:
                cfg = make_config(**(self.base | varying))
            except ConfigError as exc:
                raise ConfigError(f"grid point {describe(varying)}: {exc}") from None
            points.append(Point(varying, cfg))
        return points


def _settings(table: Any, where: str) -> dict[str, Any]:
    """Check keys and value types of one table of RunConfig settings; snake_case keys."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table of settings")
    out = coerce_settings(table, where)
    if "out" in out:
        raise ConfigError(f"{where}: 'out' is chosen per run; set it at the top of the spec")
    return out


def _axis(key: str, values: Any) -> list[dict[str, Any]]:
    where = f"[grid] {key}"
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: must be a non-empty list")
    tables = [isinstance(v, dict) for v in values]
    if all(tables):
        return [_settings(v, where) for v in values]
    if any(tables):
        raise ConfigError(f"{where}: mixes tables and plain values")
    return [_settings({key: v}, where) for v in values]


def _axes(grid: Any) -> list[list[dict[str, Any]]]:
    if not isinstance(grid, dict):
        raise ConfigError("[grid]: must be a table of lists")
    axes, owner = [], {}
    for key, values in grid.items():
        axis = _axis(key, values)
        for name in {n for option in axis for n in option}:
            if name in owner:
                raise ConfigError(f"[grid]: {name!r} is set by both {owner[name]!r} and {key!r}")
            owner[name] = key
        axes.append(axis)
    return axes


def load_spec(path: str | os.PathLike) -> SweepSpec:
    """Read and check a sweep file; raises ConfigError naming the offending key."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"sweep: no such file {os.fspath(path)!r}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"sweep: {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(raw) - TOP_LEVEL)
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key {unknown[0]!r}")
    name = str(raw.get("name", path.stem))
    return SweepSpec(
        name=name,
        out=str(raw.get("out", Path("runs") / name)),
        base=_settings(raw.get("base", {}), "[base]"),
        axes=_axes(raw.get("grid", {})),
    )
