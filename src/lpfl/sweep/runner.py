"""Runs a sweep's points one by one, so that stopping it at any moment loses one run at most.

Layout under the sweep's folder ``OUT``:

- ``OUT/<hash>/``: a finished run (status completed or diverged); never touched again;
- ``OUT/<hash>.partial/``: the run in progress. It is renamed to ``OUT/<hash>/`` only
  once the run has finished, so a crash or a kill cannot leave a half-written run that
  looks finished. The next invocation resumes it from its last checkpoint (runs save
  one every ``checkpoint_every`` rounds), or starts it afresh if it has none.

The ``out`` recorded inside results.json is therefore the ``.partial`` path the run was
written to; the folder name (the hash) is what identifies a run.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from time import monotonic

from tqdm.auto import tqdm

from ..data import reusing_loaded_data
from ..engine import DivergenceError, checkpoint, resolve_device, run_simulation
from ..provenance import device_name
from .durations import Durations
from .spec import Point

FINISHED = ("completed", "diverged")  # a diverged run is a result, not an error to retry


@dataclass(frozen=True)
class Tally:
    ran: int = 0
    skipped: int = 0
    diverged: int = 0  # of those that ran

    def __str__(self) -> str:
        return f"{self.ran} run, {self.skipped} skipped, {self.diverged} diverged"


def finished_status(run_dir: Path) -> str | None:
    """The status of the finished run in ``run_dir``, or None when it has to be (re)run."""
    try:
        status = json.loads((run_dir / "results.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):  # missing, unreadable or not a JSON object
        return None
    return status if status in FINISHED else None


def point_state(out: Path, point: Point) -> str:
    """For --dry-run: completed/diverged (will be skipped), stale (will be redone) or todo."""
    status = finished_status(out / point.hash)
    if status:
        return status
    leftovers = (out / point.hash).exists() or (out / f"{point.hash}.partial").exists()
    return "stale" if leftovers else "todo"


def _run_point(point: Point, out: Path, progress: bool) -> str:
    final, partial = out / point.hash, out / f"{point.hash}.partial"
    shutil.rmtree(final, ignore_errors=True)
    resume = (partial / checkpoint.FILENAME).exists()
    if not resume:
        shutil.rmtree(partial, ignore_errors=True)
    cfg = replace(point.config, out=str(partial))
    try:
        run_simulation(
            cfg, progress=progress, log=lambda _msg: None, label=point.label, resume=resume
        )
        status = "completed"
    except DivergenceError:
        status = "diverged"
    partial.rename(final)
    return status


def run_sweep(
    points: Sequence[Point],
    out: Path,
    progress: bool = True,
    echo: Callable[[str], None] = tqdm.write,
    time_budget: float | None = None,
) -> Tally:
    """Run every point not already finished under ``out``; other errors stop the sweep.

    A run that raises anything but DivergenceError (missing data, a bug, Ctrl-C) stops
    the sweep: the cause is usually shared by the points still to come. With a
    ``time_budget`` (seconds), no run starts that would end after it, judging by the
    runs made so far, here or, on this device, in earlier processes (``durations.py``):
    on a time-boxed machine a run cut off midway is lost work. A run that would not fit
    is passed over, and a later, shorter one may still start.
    Consecutive runs on one dataset read its files once.
    """
    out.mkdir(parents=True, exist_ok=True)
    with reusing_loaded_data():
        return _run_points(points, out, progress, echo, time_budget)


def _run_points(
    points: Sequence[Point],
    out: Path,
    progress: bool,
    echo: Callable[[str], None],
    time_budget: float | None,
) -> Tally:
    ran = skipped = diverged = 0
    started = monotonic()
    durations: dict[str, Durations] = {}  # by the device setting, read when first needed
    left_out: list[str] = []  # runs that would overrun the budget; shorter ones may still fit
    for point in tqdm(points, desc="sweep", unit="run", disable=not progress):
        if finished_status(out / point.hash):  # also catches a duplicate point just run
            skipped += 1
            continue
        config = point.config.to_dict()
        device = point.config.device
        if device not in durations:
            durations[device] = Durations(out, device_name(resolve_device(device)))
        if time_budget is not None:
            expected = durations[device].expect(config)
            if monotonic() - started + expected > time_budget:
                left_out.append(f"{point.label} (expected {expected:.0f} s)")
                continue
        tic = monotonic()
        status = _run_point(point, out, progress)
        durations[device].record(config, monotonic() - tic)
        ran += 1
        diverged += status == "diverged"
        if progress:
            echo(f"{point.hash} {status}: {point.label}")
    if left_out:
        echo(
            f"time budget of {time_budget:.0f} s reached: {len(left_out)} run(s) not started, "
            f"the first: {left_out[0]}"
        )
    return Tally(ran, skipped, diverged)
