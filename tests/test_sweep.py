"""Sweeps: every grid point runs once, reruns skip finished work, bad specs stop before any run."""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path

import pytest

from lpfl import cli
from lpfl.config import ConfigError, make_config
from lpfl.engine import DivergenceError, Recorder, resolve_device
from lpfl.provenance import device_name
from lpfl.sweep import load_spec, run_hash, runner
from lpfl.sweep.durations import Durations

BASE = """
[base]
dataset = "digits"
model = "mlp"
clients = 6
participation = 0.5
rounds = 3
batch-size = 32
"""


def _spec(tmp_path: Path, grid: str, base: str = BASE) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(base + "\n[grid]\n" + grid)
    return path


def _sweep(spec: Path, out: Path, *flags: str) -> int:
    return cli.main(["sweep", str(spec), "--out", str(out), "--quiet", *flags])


def _runs(out: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/results.json")}


GRID = "bits = [8, 32]\nseed = [0, 1]\n"


def test_sweep_runs_every_point_then_a_rerun_skips_them_all(tmp_path, capsys):
    spec, out = _spec(tmp_path, GRID), tmp_path / "out"
    assert _sweep(spec, out) == 0
    assert capsys.readouterr().out.startswith("4 run, 0 skipped, 0 diverged")
    runs = _runs(out)
    assert sorted((r["config"]["bits"], r["config"]["seed"]) for r in runs.values()) == [
        (8, 0), (8, 1), (32, 0), (32, 1),
    ]  # fmt: skip
    assert all(r["status"] == "completed" and len(r["rounds"]) == 3 for r in runs.values())
    assert all(run_hash(r["config"]) == name for name, r in runs.items()), "folder = config hash"
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/results.json")}

    assert _sweep(spec, out) == 0
    assert capsys.readouterr().out.startswith("0 run, 4 skipped, 0 diverged")
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/results.json")} == stamps


def test_only_missing_partial_or_failed_runs_are_redone(tmp_path, capsys):
    spec, out = _spec(tmp_path, GRID), tmp_path / "out"
    _sweep(spec, out)
    capsys.readouterr()
    deleted, crashed, failed, kept = sorted(_runs(out))
    shutil.rmtree(out / deleted)
    (out / crashed).rename(out / f"{crashed}.partial")  # killed before the final rename
    results = out / failed / "results.json"
    results.write_text(json.dumps(json.loads(results.read_text()) | {"status": "failed"}))
    stamp = (out / kept / "results.json").stat().st_mtime_ns

    assert _sweep(spec, out) == 0
    assert capsys.readouterr().out.startswith("3 run, 1 skipped, 0 diverged")
    assert sorted(p.name for p in out.iterdir()) == sorted([deleted, crashed, failed, kept])
    assert all(r["status"] == "completed" for r in _runs(out).values())
    assert (out / kept / "results.json").stat().st_mtime_ns == stamp


def test_a_diverged_run_is_finished_and_the_sweep_goes_on(tmp_path, capsys, monkeypatch):
    real = runner.run_simulation

    def diverge_seed_1(cfg, **kwargs):
        if cfg.seed != 1:
            return real(cfg, **kwargs)
        Recorder(cfg.out, cfg.to_dict()).finish("diverged", "boom")
        raise DivergenceError("boom")

    monkeypatch.setattr(runner, "run_simulation", diverge_seed_1)
    spec, out = _spec(tmp_path, "seed = [0, 1, 2]\n"), tmp_path / "out"
    assert _sweep(spec, out) == 0
    assert capsys.readouterr().out.startswith("3 run, 0 skipped, 1 diverged")
    assert sorted(r["status"] for r in _runs(out).values()) == [
        "completed",
        "completed",
        "diverged",
    ]
    assert _sweep(spec, out) == 0
    assert capsys.readouterr().out.startswith("0 run, 3 skipped, 0 diverged")


def test_a_bad_point_aborts_before_any_run(tmp_path, capsys):
    spec, out = _spec(tmp_path, "seed = [0, 1]\nbits = [8, 1]\n"), tmp_path / "out"
    assert _sweep(spec, out) == 2
    err = capsys.readouterr().err
    assert "--bits" in err and "bits=1" in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ("colour = [1, 2]\n", "unknown key 'colour'"),
        ("v = [{bits = 8, colour = 1}]\n", "unknown key 'colour'"),
        ("bits = [8]\nv = [{bits = 6}]\n", "'bits' is set by both 'bits' and 'v'"),
        ("v = [{bits = 8}, 6]\n", "mixes tables and plain values"),
        ("bits = []\n", "non-empty list"),
        ("alpha = ['x']\n", "--alpha: expected float"),
        ("out = ['a']\n", "'out' is chosen per run"),
    ],
)
def test_bad_specs_name_the_key(tmp_path, grid, message):
    with pytest.raises(ConfigError, match=message):
        load_spec(_spec(tmp_path, grid)).points()


def test_dry_run_lists_points_and_writes_nothing(tmp_path, capsys):
    spec, out = _spec(tmp_path, GRID), tmp_path / "out"
    assert _sweep(spec, out, "--dry-run") == 0
    lines = capsys.readouterr().out.splitlines()
    assert not out.exists()
    points = load_spec(spec).points()
    assert lines[:4] == [f"{p.hash}  todo       {p.label}" for p in points]
    assert lines[0].endswith("bits=8 seed=0")
    assert lines[4] == f"4 points in {out}: 0 finished, 4 to run"

    runner.run_sweep(points[:1], out, progress=False)
    before = sorted(out.rglob("*"))
    _sweep(spec, out, "--dry-run")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[1] == "completed" and lines[1].split()[1] == "todo"
    assert sorted(out.rglob("*")) == before


def test_hash_is_stable_and_ignores_where_a_run_goes():
    base = dict(dataset="digits", bits=8, alpha=1.0)
    cfg = make_config(**base)
    same = [
        make_config(**(base | {"alpha": 1})),  # an int for a float field
        make_config(**base, out="x", device="cpu", data_dir="/d", engine="sequential"),
    ]
    assert {run_hash(c.to_dict()) for c in same} == {run_hash(cfg.to_dict())}
    assert run_hash(dict(reversed(cfg.to_dict().items()))) == run_hash(cfg.to_dict())
    h = run_hash(cfg.to_dict())
    assert len(h) == 12 and int(h, 16) >= 0
    for change in ({"seed": 1}, {"bits": 6}, {"eval_every": 2}, {"moving_average": 0.0}):
        assert run_hash(make_config(**(base | change)).to_dict()) != h


def test_tables_in_the_grid_set_several_keys_at_once(tmp_path):
    grid = (
        'dataset = ["digits"]\n'
        "variant = [{bits = 8, moving-average = 0.9}, {bits = 32, moving_average = 0}]\n"
        "seed = [0, 1]\n"
    )
    points = load_spec(_spec(tmp_path, grid)).points()
    got = [(p.config.bits, p.config.moving_average, p.config.seed) for p in points]
    assert got == [(8, 0.9, 0), (8, 0.9, 1), (32, 0.0, 0), (32, 0.0, 1)]
    assert points[2].label == "dataset=digits bits=32 moving_average=0.0 seed=0"
    assert all(p.config.clients == 6 for p in points), "[base] applies to every point"


def test_experiment_specs_load():
    root = Path(__file__).parent.parent / "experiments"
    full = load_spec(root / "table1-fedavg.toml").points()
    priority = load_spec(root / "table1-priority.toml").points()
    assert len(full) == 4 * 3 * 3 * 2 * 3 and len(priority) == 2 * 3 * 5 * 3
    assert {p.hash for p in priority} <= {p.hash for p in full}, "priority runs are reused"
    methods = load_spec(root / "methods-fmnist.toml")
    fedavg = {p.hash for p in methods.points() if p.config.algorithm == "fedavg"}
    assert len(fedavg) == 12 and fedavg <= {p.hash for p in priority}
    assert methods.out == load_spec(root / "table1-priority.toml").out, "so they run once"
    first = priority[:15]  # a GPU slot finishes a few runs: every FMNIST cell before repeats
    assert {(p.config.dataset, p.config.seed) for p in first} == {("fmnist", 0)}
    assert len({(p.config.alpha, p.config.bits, p.config.moving_average) for p in first}) == 15
    assert {(p.config.model, p.config.clients, p.config.rounds) for p in full} == {
        ("convnet", 80, 200)
    }


def test_shards_split_the_points_between_processes(tmp_path, capsys):
    spec, out = _spec(tmp_path, GRID), tmp_path / "out"
    hashes = [p.hash for p in load_spec(spec).points()]
    shards = []
    for i in range(3):
        assert _sweep(spec, out, "--dry-run", "--shard", f"{i}/3") == 0
        shards.append([line.split()[0] for line in capsys.readouterr().out.splitlines()[:-1]])
    assert shards == [hashes[0::3], hashes[1::3], hashes[2::3]]
    for bad in ("3/3", "1", "a/b", "-1/2"):
        assert _sweep(spec, out, f"--shard={bad}") == 2
        assert "--shard" in capsys.readouterr().err


def test_time_budget_starts_no_run_that_would_overrun(tmp_path, monkeypatch):
    spec, out = _spec(tmp_path, GRID), tmp_path / "out"
    clock = iter(range(0, 1000, 10))  # every monotonic() call advances 10 s
    monkeypatch.setattr(runner, "monotonic", lambda: next(clock))
    messages: list[str] = []
    points = load_spec(spec).points()
    # Start at t=0; run 1 goes from t=20 to t=30 (longest: 10 s); at t=40, run 2
    # would end near t=50 > 45: it is not started.
    tally = runner.run_sweep(points, out, progress=False, echo=messages.append, time_budget=45)
    assert tally.ran == 1 and len(_runs(out)) == 1
    assert messages and "time budget" in messages[-1]


def test_time_budget_judges_a_first_run_by_earlier_runs_on_this_device(tmp_path, monkeypatch):
    """A fresh process knows nothing of its own, but the folder holds earlier runs: one
    of the same kind on this device that took 100 s keeps the 8-bit point from starting
    with 50 s to go; a 1000-s run on another device says nothing, so the 32-bit one, of
    a kind not run here yet, is judged by the longest run known here, and waits too."""
    spec, out = _spec(tmp_path, "bits = [8, 32]\n"), tmp_path / "out"
    eight, thirty_two = load_spec(spec).points()
    here = device_name(resolve_device(eight.config.device))
    for name, point, device, seconds in (
        ("earlier8bit0", eight, here, 100),
        ("earlier32bit", thirty_two, "NVIDIA H200", 1000),
    ):
        start = datetime.datetime(2026, 11, 27, 12, tzinfo=datetime.UTC)
        end = start + datetime.timedelta(seconds=seconds)
        session = {"device": device, "started": start.isoformat(), "finished": end.isoformat()}
        run = {"status": "completed", "config": point.config.to_dict() | {"seed": 9}}
        (out / name).mkdir(parents=True)
        (out / name / "results.json").write_text(json.dumps(run | {"sessions": [session]}))
    clock = iter(range(1000))  # every monotonic() call advances 1 s
    monkeypatch.setattr(runner, "monotonic", lambda: next(clock))
    messages: list[str] = []
    tally = runner.run_sweep(
        [eight, thirty_two], out, progress=False, echo=messages.append, time_budget=50
    )
    assert tally.ran == 0 and not {eight.hash, thirty_two.hash} & set(_runs(out))
    assert "2 run(s) not started" in messages[-1] and "expected 100 s" in messages[-1]
    durations = Durations(out, here)
    assert durations.expect(thirty_two.config.to_dict()) == 100  # not the other device's
    assert Durations(tmp_path / "empty", here).expect(thirty_two.config.to_dict()) == 0


def test_only_selects_points_by_setting(tmp_path, capsys):
    spec, out = _spec(tmp_path, GRID + "alpha = [0.04, 0.5]\n"), tmp_path / "out"
    points = load_spec(spec).points()
    assert _sweep(spec, out, "--dry-run", "--only", "bits=8", "--only", "alpha=0.5") == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()[:-1]]
    wanted = [p.hash for p in points if p.config.bits == 8 and p.config.alpha == 0.5]
    assert listed == wanted and len(wanted) == 2
    assert _sweep(spec, out, "--dry-run", "--only", "dataset=digits") == 0
    assert capsys.readouterr().out.count("todo") == len(points)
    for bad in ("bits", "nonsense=1", "bits=eight"):
        assert _sweep(spec, out, "--only", bad) == 2
        assert "--" in capsys.readouterr().err
