"""Reports: Table 1 cells recomputed independently from tiny runs, the figures, the paper table."""

from __future__ import annotations

import csv
import json
import shutil
import statistics
from pathlib import Path

import pytest

from lpfl import cli
from lpfl.report import PAPER_TABLE1
from lpfl.report.paper import PAPER_METHODS, SETTING
from lpfl.sweep import load_spec, run_sweep

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SPEC = """
[base]
dataset = "digits"
model = "mlp"
clients = 6
participation = 0.5
rounds = 3
[grid]
variant = [{bits = 8, moving-average = 0.9}, {bits = 32, moving-average = 0.0}]
seed = [0, 1, 2]
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Six tiny digits runs (two Table-1 rows x three seeds), made once for the module."""
    root = tmp_path_factory.mktemp("report")
    (root / "spec.toml").write_text(SPEC)
    run_sweep(load_spec(root / "spec.toml").points(), root / "runs", progress=False)
    return root / "runs"


def _by_seed(runs: Path, bits: int, ma: float) -> dict[int, float]:
    results = [json.loads(p.read_text()) for p in runs.glob("*/results.json")]
    return {
        r["config"]["seed"]: 100 * r["summary"]["final_accuracy_mean"]
        for r in results
        if r["config"]["bits"] == bits and r["config"]["moving_average"] == ma
    }


def _expected(runs: Path, bits: int, ma: float) -> list[float]:
    return list(_by_seed(runs, bits, ma).values())


def _table(md: Path) -> dict[str, dict[str, str]]:
    """table1.md as {row label: {column label: cell text}}."""
    lines = [line for line in md.read_text().splitlines() if line.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    return {row[0]: dict(zip(head[1:], row[1:], strict=True)) for row in rows}


def test_table1_cells_and_figures(runs, tmp_path, capsys):
    out = tmp_path / "rep"
    assert cli.main(["report", str(runs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("table1.md", "table1.csv", "curves_digits.png", "overfit_digits.png"):
        assert f"wrote {out / name}" in printed
    for png in ("curves_digits.png", "overfit_digits.png", "drift_digits.png",
                "accuracy_vs_bytes.png"):  # fmt: skip
        assert (out / png).read_bytes().startswith(PNG_MAGIC)

    table = _table(out / "table1.md")
    assert list(table) == ["8b avg", "6b avg", "32b avg", "8b no", "6b no", "32b no"]
    assert list(table["8b avg"])[:4] == ["fmnist α=0.01", "cifar10 α=0.01", "cinic10 α=0.01",
                                         "cifar100 α=0.01"]  # fmt: skip
    assert list(table["8b avg"])[-1] == "digits α=0.04", "settings beyond the paper's come last"
    for row, bits, ma in (("8b avg", 8, 0.9), ("32b no", 32, 0.0)):
        accs = _expected(runs, bits, ma)
        mean, std = statistics.mean(accs), statistics.stdev(accs)
        assert table[row]["digits α=0.04"] == f"{mean:.1f} ± {std:.1f} (n=3)"
    assert table["6b avg"]["digits α=0.04"] == "—"
    assert table["8b avg"]["fmnist α=0.01"] == "— · paper 80.1"

    with (out / "table1.csv").open() as fh:
        cells = {(r["row"], r["dataset"], r["alpha"]): r for r in csv.DictReader(fh)}
    assert len(cells) == 6 * 13
    cell = cells["8b avg", "digits", "0.04"]
    assert int(cell["n"]) == 3 and float(cell["mean"]) == pytest.approx(
        statistics.mean(_expected(runs, 8, 0.9)), abs=1e-3
    )
    by_seed = _by_seed(runs, 8, 0.9)
    assert cell["per_seed"] == ";".join(f"{s}:{by_seed[s]:.2f}" for s in sorted(by_seed))
    assert float(cells["32b no", "cifar10", "0.16"]["paper"]) == 71.9


def test_copies_unfinished_and_diverged_runs(runs, tmp_path):
    work = tmp_path / "runs"
    shutil.copytree(runs, work)
    first = next(iter(sorted(work.glob("*/results.json"))))
    shutil.copytree(first.parent, tmp_path / "copy")  # the same run found twice
    data = json.loads(first.read_text())
    for seed, status in ((7, "diverged"), (8, "running")):
        extra = tmp_path / f"seed{seed}"
        extra.mkdir()
        changed = data | {"status": status, "config": data["config"] | {"seed": seed}}
        (extra / "results.json").write_text(json.dumps(changed))
    pooled = tmp_path / "pooled"
    pooled.mkdir()
    other = data | {"config": data["config"] | {"seed": 9, "rounds": 4}}
    (pooled / "results.json").write_text(json.dumps(other))

    assert cli.main(["report", str(work), str(tmp_path), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "table1.md").read_text()
    row = "8b avg" if data["config"]["bits"] == 8 else "32b no"
    cell = _table(tmp_path / "rep" / "table1.md")[row]["digits α=0.04"]
    assert "(n=4, 1 diverged)" in cell, "the copy counts once, the running run not at all"
    assert f"{row}, digits α=0.04 pools runs differing in rounds" in md


def test_default_folder_and_errors(runs, tmp_path, capsys):
    work = tmp_path / "runs"
    shutil.copytree(runs, work)
    assert cli.main(["report", str(work)]) == 0
    assert (work / "report" / "table1.md").exists()
    assert cli.main(["report", str(tmp_path / "nowhere")]) == 2
    (tmp_path / "empty").mkdir()
    assert cli.main(["report", str(tmp_path / "empty")]) == 2
    assert "no finished run" in capsys.readouterr().err


def test_paper_table_has_every_value_of_the_notes():
    assert len(PAPER_TABLE1) == 12 and all(len(row) == 6 for row in PAPER_TABLE1.values())
    assert PAPER_TABLE1["fmnist", 0.01][8, True] == (80.1, 0.7)
    assert PAPER_TABLE1["fmnist", 0.01][6, False] == (41.5, 4.8)
    assert PAPER_TABLE1["cifar100", 0.01][8, False] == (7.32, 0.4)
    assert PAPER_TABLE1["cifar10", 0.04][32, True] == (58.6, 0.3)
    assert PAPER_TABLE1["cinic10", 0.16][32, False] == (57.0, 1.3)
    assert PAPER_TABLE1["cifar100", 0.16][6, False] == (9.62, 0.2)


def test_act_rounded_evaluation_is_reported_beside_the_fp32_one(runs, tmp_path):
    work = tmp_path / "runs"
    shutil.copytree(runs, work)
    for path in work.glob("*/results.json"):
        data = json.loads(path.read_text())
        if data["config"]["bits"] == 8:  # as --eval-quantized records it, one value per round
            for i, r in enumerate(data["rounds"]):
                r["quantized_test_accuracy"] = 0.40 + 0.01 * i  # 3 rounds: mean 0.41
            path.write_text(json.dumps(data))
    out = tmp_path / "rep"
    assert cli.main(["report", str(work), "--out", str(out)]) == 0
    table = _table(out / "table1.md")
    assert "act-rounded eval 41.0" in table["8b avg"]["digits α=0.04"]
    assert "act-rounded" not in table["32b no"]["digits α=0.04"]
    with (out / "table1.csv").open() as fh:
        cells = {(r["row"], r["dataset"]): r for r in csv.DictReader(fh)}
    assert float(cells["8b avg", "digits"]["quantized_eval_mean"]) == pytest.approx(41.0)
    assert cells["32b no", "digits"]["quantized_eval_mean"] == ""


def test_methods_table_pairs_each_method_with_the_paper(runs, tmp_path):
    """Relabelled copies of the tiny runs stand in for FedProx runs in the paper's setup."""
    work = tmp_path / "runs"
    for i, path in enumerate(sorted(runs.glob("*/results.json"))):
        data = json.loads(path.read_text())
        data["config"] |= SETTING | {"algorithm": "fedprox", "dataset": "fmnist", "alpha": 0.01}
        (work / f"r{i}").mkdir(parents=True)
        (work / f"r{i}" / "results.json").write_text(json.dumps(data))
    out = tmp_path / "rep"
    assert cli.main(["report", str(work), "--out", str(out)]) == 0
    table = _table(out / "methods.md")
    for row, bits, ma, paper in (
        ("FedProx 8b avg", 8, 0.9, 83.0),
        ("FedProx 32b no", 32, 0.0, 81.1),
    ):
        accs = _expected(work, bits, ma)
        mean, std = statistics.mean(accs), statistics.stdev(accs)
        cell = table[row]["fmnist α=0.01"]
        assert cell.startswith(f"{mean:.1f} ± {std:.1f} (n=3)") and f"paper {paper:g}" in cell
        assert f"Δ {mean - paper:+.1f}" in cell
    assert table["FedAvg 8b avg"]["fmnist α=0.01"].startswith("—")  # no FedAvg run here
    assert "paper 80.1" in table["FedAvg 8b avg"]["fmnist α=0.01"]  # Table 1's value


def test_runs_in_another_setup_stand_beside_the_paper_not_against_it(runs, tmp_path):
    """FMNIST runs of the MLP for 3 rounds: the paper's number is shown, no difference,
    no verdict, and the footnote and the CSV name what differs."""
    work = tmp_path / "runs"
    for i, path in enumerate(sorted(runs.glob("*/results.json"))):
        data = json.loads(path.read_text())
        data["config"] |= {"dataset": "fmnist", "alpha": 0.01}
        (work / f"r{i}").mkdir(parents=True)
        (work / f"r{i}" / "results.json").write_text(json.dumps(data))
    out = tmp_path / "rep"
    assert cli.main(["report", str(work), "--out", str(out)]) == 0
    text = (out / "table1.md").read_text()
    cell = _table(out / "table1.md")["8b avg"]["fmnist α=0.01"]
    assert cell.endswith("(n=3) · paper 80.1 · other setup") and "Δ" not in cell
    assert "Agreement with the paper" not in text, "no cell is compared"
    assert "in: clients=6, model=mlp, participation=0.5, rounds=3." in text
    with (out / "table1.csv").open() as fh:
        line = next(r for r in csv.DictReader(fh) if r["row"] == "8b avg" and r["n"] == "3")
    assert line["other_setting"] == "clients=6;model=mlp;participation=0.5;rounds=3"
    assert line["diff"] == "" and line["agrees"] == "" and line["paper"] == "80.100"


def _relabelled(runs: Path, work: Path, change: dict, only_bits: int | None = None) -> None:
    """Copies of the tiny runs under ``work`` with ``change`` applied to their configs."""
    for path in sorted(runs.glob("*/results.json")):
        data = json.loads(path.read_text())
        if only_bits not in (None, data["config"]["bits"]):
            continue
        data["config"] |= change
        folder = work / f"{path.parent.name}-{len(list(work.glob('*')))}"
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps(data))


def test_claims_pair_the_rows_seed_by_seed(runs, tmp_path):
    """claims.md recomputed from the results files: 8b avg minus 32b no, seed by seed."""
    work = tmp_path / "runs"
    _relabelled(runs, work, {})
    _relabelled(runs, work, {"lr": 0.01}, only_bits=8)  # no 32-bit partner: not compared
    out = tmp_path / "rep"
    assert cli.main(["report", str(work), "--out", str(out)]) == 0
    low, full = _by_seed(runs, 8, 0.9), _by_seed(runs, 32, 0.0)
    diffs = {s: low[s] - full[s] for s in (0, 1, 2)}
    text = (out / "claims.md").read_text()
    assert "## Accuracy: 8 bits + average against 32-bit FedAvg" in text
    assert "the precision" not in text
    accuracy, drift = [line for line in text.splitlines() if line.startswith("| digits")]
    mean, std = statistics.mean(diffs.values()), statistics.stdev(diffs.values())
    ahead = sum(d > 0 for d in diffs.values())
    seeds = ", ".join(f"{s}: {d:+.1f}" for s, d in diffs.items())
    assert f"| 3 | {mean:+.1f} ± {std:.1f} | {ahead}/3 | {seeds} | — |" in accuracy
    # the drift section: each run's mean client drift over its rounds, seed by seed
    drifts = {}
    for path in runs.glob("*/results.json"):
        data = json.loads(path.read_text())
        row = (data["config"]["bits"], data["config"]["seed"])
        drifts[row] = statistics.mean(r["client_drift"] for r in data["rounds"])
    drift_diffs = [drifts[8, s] - drifts[32, s] for s in (0, 1, 2)]
    assert f"| 3 | {statistics.mean(drift_diffs):+.3f} ± " in drift
    with (out / "claims.csv").open() as fh:
        lines = {line["measure"]: line for line in csv.DictReader(fh)}
    assert float(lines["accuracy"]["mean"]) == pytest.approx(mean, abs=1e-3)
    assert float(lines["drift"]["mean"]) == pytest.approx(statistics.mean(drift_diffs), abs=1e-4)
    assert lines["accuracy"]["paper"] == lines["drift"]["paper"] == ""


def test_claims_give_the_papers_difference_and_keep_settings_apart(runs, tmp_path):
    work = tmp_path / "runs"
    _relabelled(runs, work, SETTING | {"dataset": "fmnist", "alpha": 0.01})
    _relabelled(runs, work, SETTING | {"dataset": "fmnist", "alpha": 0.01, "lr": 0.01})
    out = tmp_path / "rep"
    assert cli.main(["report", str(work), "--out", str(out)]) == 0
    text = (out / "claims.md").read_text().split("## Client drift")[0]
    rows = [line for line in text.splitlines() if "| fmnist" in line]
    assert len(rows) == 2, "runs of two learning rates are two comparisons, not one"
    paper, other = sorted(rows, key=len)
    assert "| paper | 3 |" in paper and paper.endswith("| +0.6 |")  # 80.1 - 79.5
    assert "| other: lr=0.01 | 3 |" in other


def test_runs_from_before_drift_was_recorded_get_no_drift_figure(runs, tmp_path):
    work = tmp_path / "runs"
    for i, path in enumerate(sorted(runs.glob("*/results.json"))):
        data = json.loads(path.read_text())
        for r in data["rounds"]:
            del r["client_drift"]
        (work / f"r{i}").mkdir(parents=True)
        (work / f"r{i}" / "results.json").write_text(json.dumps(data))
    assert cli.main(["report", str(work), "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "curves_digits.png").exists()
    assert not (tmp_path / "rep" / "drift_digits.png").exists()


def test_paper_methods_table_has_every_value_of_the_notes():
    assert len(PAPER_METHODS) == 12 and all(len(row) == 8 for row in PAPER_METHODS.values())
    assert PAPER_METHODS["fmnist", 0.01]["abavg", 8, True] == 80.7
    assert PAPER_METHODS["cinic10", 0.01]["abavg", 32, False] == 26.4
    assert PAPER_METHODS["cifar10", 0.04]["fedprox", 8, True] == 63.2
    assert PAPER_METHODS["cifar100", 0.16]["fedftg", 32, False] == 41.6


def test_an_algorithm_plugin_gets_its_own_rows_with_no_paper_value(runs, tmp_path):
    work = tmp_path / "runs"
    for i, path in enumerate(sorted(runs.glob("*/results.json"))):
        data = json.loads(path.read_text())
        data["config"]["algorithm"] = "examples.fedmedian:plugin"
        (work / f"r{i}").mkdir(parents=True)
        (work / f"r{i}" / "results.json").write_text(json.dumps(data))
    assert cli.main(["report", str(work), "--out", str(tmp_path / "rep")]) == 0
    table = _table(tmp_path / "rep" / "methods.md")
    accs = _expected(work, 8, 0.9)
    cell = table["examples.fedmedian:plugin 8b avg"]["digits α=0.04"]
    assert cell == f"{statistics.mean(accs):.1f} ± {statistics.stdev(accs):.1f} (n=3)"
    assert table["FedProx 8b avg"]["digits α=0.04"] == "—"


def test_methods_table_is_left_out_without_other_methods(runs, tmp_path):
    assert cli.main(["report", str(runs), "--out", str(tmp_path / "rep")]) == 0
    assert not (tmp_path / "rep" / "methods.md").exists()


def test_runs_on_a_subset_read_needs_full_data(runs, tmp_path):
    """A run that trained on fewer samples than the official release is not compared."""
    path = sorted(runs.glob("*/results.json"))[0]
    data = json.loads(path.read_text())
    assert data["data"] == {"train_samples": 1438, "test_samples": 359, "full_train": None}
    data["config"] |= {"dataset": "cifar100", "alpha": 0.01}
    data["data"] = {"train_samples": 10000, "test_samples": 5000, "full_train": 50000}
    (tmp_path / "runs" / "r").mkdir(parents=True)
    (tmp_path / "runs" / "r" / "results.json").write_text(json.dumps(data))
    out = tmp_path / "rep"
    assert cli.main(["report", str(tmp_path / "runs"), "--out", str(out)]) == 0
    row = "8b avg" if data["config"]["bits"] == 8 else "32b no"
    cell = _table(out / "table1.md")[row]["cifar100 α=0.01"]
    acc = 100 * data["summary"]["final_accuracy_mean"]
    assert cell == f"needs full data (ran on 10000 training samples: {acc:.1f} (n=1))"
    with (out / "table1.csv").open() as fh:
        line = next(r for r in csv.DictReader(fh) if r["dataset"] == "cifar100" and r["n"] == "1")
    assert line["subset_train_samples"] == "10000" and line["diff"] == "" and line["paper"]


def test_table_names_the_machines_its_runs_came_from(runs, tmp_path):
    """Six runs made here, one copied from a "GPU" whose results.json was resumed on a
    second machine, and one from before sessions were recorded: each is counted under
    every machine that computed its rounds, the old one as unrecorded."""
    mixed = tmp_path / "mixed"
    shutil.copytree(runs, mixed / "here")
    for name, sessions in (("gpu", [("NVIDIA H200", "abc123", "2026-11-20"),
                                    ("NVIDIA H100 80GB HBM3", "abc123", "2026-11-21")]),
                           ("old", None)):  # fmt: skip
        source = next(runs.glob("*/results.json"))
        data = json.loads(source.read_text())
        data["config"]["seed"] = {"gpu": 7, "old": 8}[name]  # another run, not a copy
        if sessions is None:
            del data["sessions"]
        else:
            data["sessions"] = [
                {"device": d, "commit": c, "started": f"{day}T10:00:00+00:00", "first_round": i}
                for i, (d, c, day) in enumerate(sessions, 1)
            ]
        (mixed / name).mkdir()
        (mixed / name / "results.json").write_text(json.dumps(data))
    out = tmp_path / "rep"
    assert cli.main(["report", str(mixed), "--out", str(out)]) == 0
    text = (out / "table1.md").read_text()
    made = text.split("Made with:\n")[1].split("\n\n")[0].splitlines()
    local = json.loads(source.read_text())["sessions"][0]
    assert (
        made
        == [  # by device, then commit
            f"- 6 run(s) on {local['device']}, lpfl {local['commit'] or 'unknown commit'}, "
            f"{local['started'][:10]}",
            "- 1 run(s) on NVIDIA H100 80GB HBM3, lpfl abc123, 2026-11-21",
            "- 1 run(s) on NVIDIA H200, lpfl abc123, 2026-11-20",
            "- 1 run(s) whose results.json predates the record of where runs ran: "
            "see the notes kept beside them",
        ]
    )


def test_a_cell_agrees_within_the_papers_spread_or_two_points():
    from lpfl.report.table1 import Cell, Grid, grid_markdown

    def cell(ours, paper, std):
        return Cell((ours,), 0, paper, paper_std=std)

    assert cell(54.2, 57.4, 0.6).agrees is False  # 3.2 points off, the paper's ± is 0.6
    assert cell(55.5, 57.4, 0.6).agrees is True  # within 2 points
    assert cell(86.3, 90.6, 4.8).agrees is True  # within the paper's own ±
    assert cell(59.5, 57.4, None).agrees is False  # no ± given: 2 points
    assert Cell((), 0, 57.4, paper_std=0.6).agrees is None  # nothing measured
    assert Cell((50.0,), 0, 57.4, subset=10_000, paper_std=0.6).agrees is None  # not comparable

    a, b = (0.04, "cifar10"), (0.16, "cifar10")
    rows = [(8, True)]
    grid = Grid(rows, [a, b], {(rows[0], a): cell(54.2, 57.4, 0.6),
                               (rows[0], b): cell(72.0, 72.4, 0.7)}, [], [])  # fmt: skip
    text = grid_markdown(grid, ["# t"], lambda row: "8b avg")
    assert "54.2 (n=1) · paper 57.4 · Δ -3.2 ≠" in text and "Δ -0.4 ≈" in text
    assert "1 of 2 measured cells agree." in text
    assert "- differs: 8b avg, cifar10 α=0.04: 54.2 (n=1) vs 57.4 (Δ -3.2)" in text


def test_timing_gives_each_kind_of_run_its_median_round_by_phase(runs, tmp_path):
    """Medians over every round but each run's first, per device, commit and kind; runs
    from before the phases were recorded show their round time alone."""
    root = tmp_path / "runs"
    shutil.copytree(runs, root)
    old = next(p for p in root.glob("*/results.json") if '"bits": 32' in p.read_text())
    data = json.loads(old.read_text())
    for r in data["rounds"]:  # as a run from an older lpfl reads
        for phase in ("train", "upload", "server", "eval"):
            del r[f"{phase}_seconds"]
    data["sessions"][0] |= {"commit": "0ld0ld0ld0ld"}
    del data["sessions"][0]["data_seconds"], data["sessions"][0]["setup_seconds"]
    old.write_text(json.dumps(data))
    out = tmp_path / "rep"
    assert cli.main(["report", str(root), "--out", str(out)]) == 0
    lines = [line for line in (out / "timing.md").read_text().splitlines() if line[:2] == "| "]
    head, *rows = ([c.strip() for c in line.strip("|").split("|")] for line in lines)
    table = {(row[head.index("bits")], row[head.index("runs")]): dict(zip(head, row, strict=True))
             for row in rows}  # fmt: skip
    assert set(table) == {("8", "3"), ("32", "2"), ("32", "1")}, "the old run, its own row"
    assert table["32", "1"]["lpfl"] == "0ld0ld0ld0ld" and table["32", "2"]["train s"] != "—"
    eight = [json.loads(p.read_text()) for p in root.glob("*/results.json")]
    eight = [r for r in eight if r["config"]["bits"] == 8]
    trains = [r["train_seconds"] for run in eight for r in run["rounds"][1:]]
    assert table["8", "3"]["train s"] == f"{statistics.median(trains):.3f}"
    startup = [s["data_seconds"] + s["setup_seconds"] for run in eight for s in run["sessions"]]
    assert table["8", "3"]["start-up s"] == f"{statistics.median(startup):.3f}"
    edited = table["32", "1"]
    assert edited["train s"] == edited["start-up s"] == "—"
    assert edited["s/round"] == f"{statistics.median(r['seconds'] for r in data['rounds'][1:]):.3f}"
