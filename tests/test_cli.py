"""The command line: files written, bad flags refused with their name, the demo."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from power_cut import power_cut_in_round

from lpfl import cli
from lpfl.sweep import run_hash


def test_run_writes_results(tmp_path, capsys):
    out = tmp_path / "r"
    code = cli.main(
        [
            "run",
            "--dataset",
            "digits",
            "--model",
            "mlp",
            "--clients",
            "4",
            "--rounds",
            "2",
            "--bits",
            "6",
            "--no-download-quant",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    data = json.loads((out / "results.json").read_text())
    assert data["config"]["bits"] == 6 and data["config"]["download_quant"] is False
    assert len(data["rounds"]) == 2 and (out / "metrics.csv").exists()
    assert "final accuracy" in capsys.readouterr().out


def test_config_file_and_flag_override(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('dataset = "digits"\nmodel = "mlp"\nclients = 4\nrounds = 5\nbits = 32\n')
    out = tmp_path / "r"
    assert (
        cli.main(["run", "--config", str(toml), "--rounds", "1", "--out", str(out), "--quiet"]) == 0
    )
    data = json.loads((out / "results.json").read_text())
    assert data["config"]["bits"] == 32 and len(data["rounds"]) == 1


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--bits", "1"], "--bits"),
        (["--bits", "20"], "--bits"),
        (["--alpha", "0"], "--alpha"),
        (["--alpha", "-0.5"], "--alpha"),
        (["--participation", "0"], "--participation"),
        (["--participation", "1.2"], "--participation"),
        (["--dataset", "imagenet"], "--dataset"),
        (["--model", "vgg16"], "--model"),
        (["--clients", "5000"], "--clients"),
        (["--moving-average", "1.5"], "--moving-average"),
    ],
)
def test_invalid_flags_are_refused_with_one_line(argv, flag, capsys, tmp_path):
    out = tmp_path / "never"
    assert cli.main(["run", *argv, "--rounds", "1", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"lpfl: error: {flag}:") and "\n" not in err
    assert not out.exists(), "nothing may be written for a refused config"


def test_missing_dataset_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "cifar10" in err and str(tmp_path) in err
    assert not (tmp_path / "runs").exists(), "a run that cannot start leaves no folder"


def test_run_without_out_keeps_its_results_under_runs_hash(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["--dataset", "digits", "--model", "mlp", "--clients", "4", "--rounds", "2"]
    assert cli.main(["run", *argv, "--quiet"]) == 0
    (folder,) = (tmp_path / "runs").iterdir()
    data = json.loads((folder / "results.json").read_text())
    assert folder.name == run_hash(data["config"]) and len(data["rounds"]) == 2
    assert f"results: {Path('runs') / folder.name / 'results.json'}" in capsys.readouterr().out


def test_ctrl_c_keeps_the_rounds_and_says_how_to_go_on(tmp_path, capsys):
    out = tmp_path / "r"
    argv = ["--dataset", "digits", "--model", "mlp", "--clients", "4", "--rounds", "6"]
    with power_cut_in_round(4):  # a KeyboardInterrupt in round 4, after round 2's checkpoint
        code = cli.main(["run", *argv, "--checkpoint-every", "2", "--out", str(out), "--quiet"])
    assert code == cli.INTERRUPTED
    err = capsys.readouterr().err
    assert f"lpfl run --resume {out}" in err and "Traceback" not in err
    data = json.loads((out / "results.json").read_text())
    assert data["status"] == "interrupted" and len(data["rounds"]) == 3
    assert data["error"].startswith("KeyboardInterrupt")


def test_ctrl_c_in_a_sweep_says_the_same_command_goes_on(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text(
        f'out = "{tmp_path / "runs"}"\n[base]\ndataset = "digits"\nmodel = "mlp"\n'
        "clients = 4\nrounds = 3\n[grid]\nseed = [0, 1]\n"
    )
    with power_cut_in_round(5):  # round 2 of the second run
        assert cli.main(["sweep", str(spec), "--quiet"]) == cli.INTERRUPTED
    assert "The same command goes on" in capsys.readouterr().err
    assert cli.main(["sweep", str(spec), "--quiet"]) == 0
    assert "1 run, 1 skipped" in capsys.readouterr().out


def test_demo_prints_table_and_saves_plot(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(cli.DEMO_SETTINGS, "rounds", 2)
    monkeypatch.setitem(cli.DEMO_SETTINGS, "local_epochs", 1)
    assert cli.main(["demo", "--out", str(tmp_path), "--quiet"]) == 0
    text = capsys.readouterr().out
    rows = [line.split("  ")[0] for line in text.splitlines() if "%" in line]
    assert rows == ["32-bit FedAvg", "8-bit FedAvg", "8-bit FedAvg + moving avg"]
    png = tmp_path / "accuracy.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("command", [[], ["run"], ["demo"], ["sweep"], ["report"]])
def test_every_help_page_prints(command, capsys):
    """argparse %-formats help texts: one stray "%" in a config's help broke `lpfl run --help`."""
    with pytest.raises(SystemExit) as exit_:
        cli.main([*command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ")
    if command == ["run"]:
        assert "widths[k % n]" in out and "--fused-quant" in out


def test_sigterm_ends_a_run_as_ctrl_c_does(tmp_path):
    """`kill`, `timeout` and job schedulers stop with SIGTERM: the run must say so and keep
    its checkpoint, not be left marked "running"."""
    out = tmp_path / "r"
    argv = ["--dataset", "digits", "--model", "mlp", "--clients", "4", "--rounds", "100000"]
    command = [sys.executable, "-m", "lpfl", "run", *argv, "--checkpoint-every", "1"]
    proc = subprocess.Popen([*command, "--out", str(out), "--quiet"], stderr=subprocess.PIPE)
    results, deadline = out / "results.json", time.monotonic() + 120
    while not (results.exists() and len(json.loads(results.read_text())["rounds"]) >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, "the run never got going"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == cli.INTERRUPTED
    assert f"lpfl run --resume {out}" in err.decode()
    data = json.loads(results.read_text())
    assert data["status"] == "interrupted" and data["error"] == "KeyboardInterrupt: SIGTERM"
    assert (out / "checkpoint.pt").exists()
