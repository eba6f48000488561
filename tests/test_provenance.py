"""Every results file names the device, code version and command its rounds came from."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import torch

import lpfl
from lpfl import provenance
from lpfl.config import make_config
from lpfl.engine import run_simulation

REPO = Path(__file__).resolve().parents[1]


def test_a_run_records_where_it_ran(tmp_path):
    cfg = make_config(dataset="digits", model="mlp", clients=4, rounds=2, out=str(tmp_path))
    run_simulation(cfg, progress=False, log=lambda _m: None)
    (session,) = json.loads((tmp_path / "results.json").read_text())["sessions"]
    assert session["first_round"] == 1
    assert session["device"].startswith("CPU ") and session["device"].endswith(" cores")
    assert session["torch"] == torch.__version__ and session["lpfl"] == lpfl.__version__
    assert session["started"] <= session["finished"]  # ISO 8601 UTC sorts as time does
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", session["finished"])
    assert session["command"]
    assert session["commit"] == provenance.source_commit()


def test_source_commit_is_this_checkouts_head(monkeypatch):
    monkeypatch.delenv("LPFL_COMMIT", raising=False)
    provenance.source_commit.cache_clear()
    if not (REPO / ".git").exists():  # an exported tree: nothing to compare with
        assert provenance.source_commit() is None
        return
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert re.fullmatch(re.escape(head) + r"(\+modified)?", provenance.source_commit() or "")


def test_no_commit_outside_lpfls_own_checkout(tmp_path, monkeypatch):
    """An installed copy (no repository around it), or a copy inside another git
    repository (a venv inside some project), reports no commit, not that project's."""
    plain = tmp_path / "plain" / "lpfl"
    repo = tmp_path / "repo"
    monkeypatch.delenv("LPFL_COMMIT", raising=False)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "other"], check=True)
    for package in (plain, repo / "lib" / "lpfl"):
        package.mkdir(parents=True)
        monkeypatch.setattr(provenance, "_PACKAGE", package)
        provenance.source_commit.cache_clear()
        try:
            assert provenance.source_commit() is None, package
        finally:
            provenance.source_commit.cache_clear()


def test_a_copied_tree_is_named_by_its_sender(monkeypatch):
    monkeypatch.setenv("LPFL_COMMIT", "4b4d1dc")
    provenance.source_commit.cache_clear()
    try:
        assert provenance.source_commit() == "4b4d1dc"
    finally:
        provenance.source_commit.cache_clear()


def test_device_names():
    assert provenance.device_name("cpu").startswith("CPU ")
    assert provenance.device_name("auto") == "auto"  # not resolved yet: said as it is
