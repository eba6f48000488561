"""Optional experiment trackers: TensorBoard event files and an offline W&B run."""

from __future__ import annotations

import pytest

from lpfl.config import ConfigError, make_config
from lpfl.engine import run_simulation

TINY = dict(dataset="digits", model="mlp", clients=4, participation=0.5, rounds=3, bits=8)


def test_tensorboard_gets_every_round(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_simulation(make_config(**TINY, trackers="tensorboard", out=str(tmp_path)), progress=False,
                   log=lambda _m: None)  # fmt: skip
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    accuracy = events.Scalars("test_accuracy")
    assert [e.step for e in accuracy] == [1, 2, 3]
    assert "bytes_up" in events.Tags()["scalars"]


def test_wandb_logs_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_simulation(make_config(**TINY, trackers="wandb", out=str(tmp_path)), progress=False,
                   log=lambda _m: None)  # fmt: skip
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))


def test_unknown_tracker_is_refused():
    with pytest.raises(ConfigError, match=r"^--trackers: unknown tracker 'mlflow'"):
        make_config(trackers="tensorboard,mlflow")
