"""An interrupted run resumes from its checkpoint and ends exactly as an uninterrupted one."""

from __future__ import annotations

import json

import pytest
import torch
from power_cut import power_cut_in_round

import lpfl.engine.loop as loop
from lpfl import cli
from lpfl.config import ConfigError, make_config
from lpfl.engine import run_simulation
from lpfl.engine.recorder import TIMINGS

SETTINGS = dict(dataset="digits", model="mlp", clients=6, participation=0.5, rounds=6, bits=6)


def _rounds(out):
    data = json.loads((out / "results.json").read_text())
    return data, [{k: v for k, v in r.items() if k not in TIMINGS} for r in data["rounds"]]


@pytest.mark.parametrize(
    ("engine", "algorithm"),
    [("vectorized", "fedavg"), ("sequential", "fedavg"), ("vectorized", "fedgen"),
     ("vectorized", "fedftg"), ("sequential", "splitmix")],
)  # fmt: skip
def test_resume_after_a_crash_matches_an_uninterrupted_run(tmp_path, engine, algorithm):
    """FedGen and FedFTG also carry their generators and optimizers in the checkpoint;
    SplitMix the state of its per-round draw of each client's bases."""
    quiet = dict(progress=False, log=lambda _m: None)
    settings = SETTINGS | dict(engine=engine, algorithm=algorithm, fedftg_iterations=2,
                               hetero_widths="1/2,1/4", splitmix_base="1/4")  # fmt: skip
    straight = tmp_path / "straight"
    run_simulation(make_config(**settings, out=str(straight)), **quiet)

    crashed = tmp_path / "crashed"
    cfg = make_config(**settings, out=str(crashed), checkpoint_every=2)
    with power_cut_in_round(5), pytest.raises(KeyboardInterrupt):
        run_simulation(cfg, **quiet)
    data, _ = _rounds(crashed)
    assert data["status"] == "interrupted" and len(data["rounds"]) == 4
    assert (crashed / "checkpoint.pt").exists()

    with pytest.raises(ConfigError, match="unfinished run; continue it with `lpfl run --resume"):
        run_simulation(cfg, **quiet)  # a fresh start would write over the resumable run
    assert cli.main(["run", "--resume", str(crashed), "--quiet"]) == 0
    resumed, rows = _rounds(crashed)
    assert resumed["status"] == "completed"
    assert rows == _rounds(straight)[1], "rounds 5-6 redone from the round-4 checkpoint"
    assert [s["first_round"] for s in resumed["sessions"]] == [1, 5], "both processes named"
    assert len((crashed / "metrics.csv").read_text().splitlines()) == 7
    assert not (crashed / "checkpoint.pt").exists(), "a finished run drops its checkpoint"


def test_resume_refuses_other_flags_and_missing_runs(tmp_path, capsys):
    assert cli.main(["run", "--resume", str(tmp_path), "--bits", "8"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert cli.main(["run", "--resume", str(tmp_path / "nothing")]) == 2
    assert "results.json" in capsys.readouterr().err


def test_a_sweep_resumes_a_partial_run_from_its_checkpoint(tmp_path, monkeypatch):
    from lpfl.sweep import load_spec, run_sweep

    spec = tmp_path / "s.toml"
    spec.write_text(
        '[base]\ndataset = "digits"\nmodel = "mlp"\nclients = 6\nparticipation = 0.5\n'
        "rounds = 6\nbits = 6\ncheckpoint-every = 2\n[grid]\nseed = [0]\n"
    )
    points = load_spec(spec).points()
    out = tmp_path / "runs"
    with power_cut_in_round(5), pytest.raises(KeyboardInterrupt):
        run_sweep(points, out, progress=False)
    resumed = []
    original_load = loop.checkpoint.load
    monkeypatch.setattr(loop.checkpoint, "load", lambda *a: resumed.append(1) or original_load(*a))
    assert run_sweep(points, out, progress=False).ran == 1
    assert resumed == [1]
    data = json.loads((out / points[0].hash / "results.json").read_text())
    assert data["status"] == "completed" and len(data["rounds"]) == 6


def test_a_resumed_run_keeps_the_engine_of_its_checkpoint(tmp_path):
    """``auto`` may pick another engine where a run resumes (CPU vs GPU); the optimizer
    states in the checkpoint only fit the engine that made them."""
    quiet = dict(progress=False, log=lambda _m: None)
    settings = SETTINGS | dict(engine="sequential")  # auto would stack this MLP's clients
    straight = tmp_path / "straight"
    run_simulation(make_config(**settings, out=str(straight)), **quiet)

    crashed = tmp_path / "crashed"
    with power_cut_in_round(5), pytest.raises(KeyboardInterrupt):
        run_simulation(make_config(**settings, out=str(crashed), checkpoint_every=2), **quiet)

    explicit = make_config(**SETTINGS, engine="vectorized", out=str(crashed))
    with pytest.raises(ConfigError, match="sequential engine"):
        run_simulation(explicit, resume=True, **quiet)
    run_simulation(make_config(**SETTINGS, out=str(crashed)), resume=True, **quiet)
    resumed, rows = _rounds(crashed)
    assert resumed["config"]["engine"] == "sequential"
    assert rows == _rounds(straight)[1]


@pytest.mark.parametrize("algorithm", ["fedavg", "fedgen", "fedftg"])
def test_a_checkpoint_from_another_kind_of_device_resumes_with_a_new_random_stream(
    tmp_path, algorithm, caplog
):
    """A CUDA generator's state (16 bytes: seed and offset) cannot continue a CPU
    generator, nor the other way round: the run goes on from a new stream and says so,
    and the rounds before the checkpoint stay as they were."""
    quiet = dict(progress=False, log=lambda _m: None)
    settings = SETTINGS | dict(algorithm=algorithm, fedftg_iterations=2)
    crashed = tmp_path / "crashed"
    cfg = make_config(**settings, out=str(crashed), checkpoint_every=2)
    with power_cut_in_round(5), pytest.raises(KeyboardInterrupt):
        run_simulation(cfg, **quiet)
    _, before = _rounds(crashed)
    ckpt = torch.load(crashed / "checkpoint.pt", weights_only=False)
    cuda_state = torch.zeros(16, dtype=torch.uint8)  # what a CUDA generator saves
    ckpt["torch_generator"] = cuda_state
    if algorithm != "fedavg":
        ckpt["server"]["algorithm"]["rng"] = cuda_state
    torch.save(ckpt, crashed / "checkpoint.pt")
    said: list[str] = []
    run_simulation(cfg, resume=True, progress=False, log=said.append)
    data, rows = _rounds(crashed)
    assert data["status"] == "completed" and len(rows) == 6
    assert rows[:4] == before[:4]
    assert any("another kind of device" in line for line in said)
    drawn_anew = [r for r in caplog.records if "cannot continue" in r.getMessage()]
    assert len(drawn_anew) == (1 if algorithm == "fedavg" else 2)
