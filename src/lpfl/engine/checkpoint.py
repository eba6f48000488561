"""Everything a run needs to continue after a crash or timeout, saved between rounds.

Global model, per-client optimizer state, every RNG the round loop draws from, and
the metrics so far. Resuming from it gives the same rounds as a run that was never
interrupted. A Flower server's checkpoint holds no client state (its nodes keep
their own), so each runtime continues only the checkpoints it made.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..config import ConfigError
from .messages import DivergenceError

if TYPE_CHECKING:
    from .recorder import Recorder

FILENAME = "checkpoint.pt"
HOW_TO_RESUME = {
    "simulator": "`lpfl run --resume DIR`",
    "flower": "`flwr run` with the same run config plus resume=true",
}
FLAGS = {"simulator": ("--resume", "--out"), "flower": ("resume", "out")}  # as users set them


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
    # Every tensor lands on ``device``, where the trainers keep their clients' optimizer
    # states; the server's model and the generators' states (torch takes those as CPU
    # byte tensors only) go back to the host where they are loaded.
    return torch.load(path, map_location=device, weights_only=False)


def for_run(
    directory: str | os.PathLike | None, device: torch.device, runtime: str, resume: bool
) -> dict[str, Any] | None:
    """The checkpoint a ``runtime`` ("simulator" or "flower") run continues from when
    it resumes, or None when it starts afresh; either way refused (ConfigError) where
    it would lose or misread a run."""
    resume_flag, out_flag = FLAGS[runtime]
    if resume:
        return _load_for_resume(directory, device, runtime, resume_flag)
    _refuse_fresh_start(directory, out_flag)
    return None


def _load_for_resume(
    directory: str | os.PathLike | None, device: torch.device, runtime: str, flag: str
) -> dict[str, Any]:
    """A missing checkpoint, or one the other runtime made, cannot be continued."""
    if not directory:
        raise ConfigError(f"{flag}: needs the run's folder (out)")
    try:
        state = load(directory, device)
    except FileNotFoundError as exc:
        raise ConfigError(f"{flag}: {exc}") from None
    made_by = state.get("runtime", "simulator")  # checkpoints before Flower's name none
    if made_by != runtime:
        raise ConfigError(
            f"{flag}: the checkpoint in {directory} was made by the {made_by} runtime; "
            f"continue it with {HOW_TO_RESUME[made_by]}"
        )
    return state


def _refuse_fresh_start(directory: str | os.PathLike | None, flag: str) -> None:
    """A new run must not write over an unfinished one that could still be resumed."""
    if not directory or not (Path(directory) / FILENAME).exists():
        return
    made_by = load(directory).get("runtime", "simulator")
    raise ConfigError(
        f"{flag}: {directory} holds the checkpoint of an unfinished run; continue it with "
        f"{HOW_TO_RESUME[made_by]}, or delete {Path(directory) / FILENAME} to start afresh"
    )


def remove(directory: str | os.PathLike) -> None:
    """A finished run needs no checkpoint (it can be large: every client's optimizer state)."""
    (Path(directory) / FILENAME).unlink(missing_ok=True)


@contextmanager
def finishing(recorder: Recorder, directory: str | None) -> Iterator[None]:
    """Close a run's records however its rounds end; every recorded round stays.

    A completed or diverged run has nothing left to resume, so its checkpoint goes. An
    interrupted one (Ctrl-C, a kill turned into KeyboardInterrupt) or a failed one (any
    other error) keeps it, and results.json tells the two apart: a user who stopped a
    run should not read it as a bug.
    """
    try:
        yield
    except DivergenceError as exc:
        recorder.finish("diverged", str(exc))
        if directory:
            remove(directory)
        raise
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        recorder.finish(status, f"{type(exc).__name__}: {exc}")
        raise
    recorder.finish()
    if directory:
        remove(directory)
