"""Optional experiment trackers that receive each round's metrics (off by default).

TensorBoard writes event files under ``OUT/tensorboard``; Weights & Biases logs to
``OUT/wandb``, offline unless ``WANDB_MODE`` says otherwise (this workplace has no
network, and a user can ``wandb sync`` the run later). Both packages are optional
(``pip install lpfl[track]``); asking for one that is missing is a clear error.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

from .recorder import RoundMetrics


class Tracker(Protocol):
    def log(self, metrics: RoundMetrics) -> None: ...

    def close(self) -> None: ...


def _scalars(metrics: RoundMetrics) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in asdict(metrics).items()
        if k != "round" and isinstance(v, int | float)
    }


class TensorBoardTracker:
    def __init__(self, out: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(out / "tensorboard"))

    def log(self, metrics: RoundMetrics) -> None:
        for name, value in _scalars(metrics).items():
            self.writer.add_scalar(name, value, metrics.round)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    def __init__(self, out: Path, config: dict[str, Any]) -> None:
        import wandb

        self.run = wandb.init(
            project="lpfl",
            config=config,
            dir=str(out),
            mode=os.environ.get("WANDB_MODE", "offline"),  # type: ignore[arg-type]
        )

    def log(self, metrics: RoundMetrics) -> None:
        self.run.log(_scalars(metrics), step=metrics.round)

    def close(self) -> None:
        self.run.finish()


def open_trackers(names: tuple[str, ...], out: Path, config: dict[str, Any]) -> list[Tracker]:
    trackers: list[Tracker] = []
    for name in names:
        try:
            trackers.append(
                TensorBoardTracker(out) if name == "tensorboard" else WandbTracker(out, config)
            )
        except ImportError as exc:
            raise ImportError(
                f"--trackers {name}: {exc}; install it with pip install lpfl[track]"
            ) from exc
    return trackers
