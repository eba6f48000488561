"""Issue 7's parity check: the same config reaches the same accuracy on Flower as in
lpfl's own simulator, on digits at 8 bits + moving average, over several seeds, for
FedAvg, for the data-free methods whose messages carry more than the model (FedGen:
the generator down, label counts up; FedFTG: label counts up) and for the sub-model
methods, whose nodes each get their own slice (HeteroFL, SplitMix).

    FLWR_TELEMETRY_ENABLED=0 .venv/bin/python experiments/flower_parity.py \
        [--seeds 3] [--algorithms fedavg fedgen fedftg]

Flower runs on its simulation runtime (Ray, in this process), with the same ServerApp
and ClientApp a deployment uses. Both sample the same clients each round, but they
cannot match bit for bit: a Flower node draws its rounding and shuffling from its own
seed. So the check is statistical.
Writes results/flower-parity.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import tempfile
from pathlib import Path

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")

from flwr.simulation import run_simulation as run_flower_simulation

from lpfl.config import make_config
from lpfl.engine import run_simulation
from lpfl.flower.client_app import app as client_app
from lpfl.flower.server_app import make_server_app

SETTINGS = dict(
    dataset="digits", model="mlp", clients=10, participation=0.5, alpha=0.3, local_epochs=2,
    batch_size=32, bits=8, moving_average=0.9, device="cpu",
)  # fmt: skip


def simulator(run: dict) -> dict:
    rec = run_simulation(make_config(**run), progress=False, log=lambda _m: None)
    return rec.summary() | {"last": rec.rounds[-1].test_accuracy}


def flower(run: dict, out: Path) -> dict:
    """One Flower simulation; its results.json, read back like a deployment's."""
    backend = {"client_resources": {"num_cpus": 1}, "init_args": {"num_cpus": 2}}
    server_app = make_server_app(**run, out=str(out))
    run_flower_simulation(server_app, client_app, run["clients"], backend_config=backend)
    results = json.loads((out / "results.json").read_text())
    if results["status"] != "completed":
        raise RuntimeError(f"Flower run {out}: {results['status']}: {results.get('error')}")
    return results["summary"] | {"last": results["rounds"][-1]["test_accuracy"]}


def row(name: str, runs: list[dict]) -> str:
    last5 = [100 * r["final_accuracy_mean"] for r in runs]
    last = [100 * r["last"] for r in runs]
    return (
        f"| {name} | {', '.join(f'{a:.2f}' for a in last5)} "
        f"| {statistics.mean(last5):.2f} ± {statistics.stdev(last5):.2f} "
        f"| {statistics.mean(last):.2f} ± {statistics.stdev(last):.2f} |"
    )


def verdict(simulated: list[dict], on_flower: list[dict]) -> str:
    """The difference of the mean final accuracies against its standard error, taken
    unpaired and paired by seed (both runtimes sample the same clients for a seed, so
    the per-seed differences isolate what the runtime changes)."""
    a = [100 * r["final_accuracy_mean"] for r in simulated]
    b = [100 * r["final_accuracy_mean"] for r in on_flower]
    diff = statistics.mean(b) - statistics.mean(a)
    stderr = (statistics.variance(a) / len(a) + statistics.variance(b) / len(b)) ** 0.5
    within = "within" if abs(diff) <= 2 * stderr else "NOT within"
    per_seed = [y - x for x, y in zip(a, b, strict=True)]
    paired = statistics.stdev(per_seed) / len(per_seed) ** 0.5
    paired_within = "within" if abs(diff) <= 2 * paired else "NOT within"
    return (
        f"Flower − simulator: {diff:+.2f} points; standard error of that difference "
        f"{stderr:.2f}, so the difference is {within} noise (|difference| ≤ 2 standard "
        f"errors). Paired by seed: differences {', '.join(f'{d:+.2f}' for d in per_seed)}, "
        f"standard error {paired:.2f}, {paired_within} noise."
    )


# Each method with its defaults, and the sub-model methods with mixed budgets: half the
# clients at full (HeteroFL) or half (SplitMix) width, the other half at half or quarter.
ALGORITHMS = {
    "fedavg": {},
    "fedgen": {},
    "fedftg": {},
    "heterofl": dict(hetero_widths="1,1/2"),
    "splitmix": dict(hetero_widths="1/2,1/4", splitmix_base="1/4"),
}


def compare(algorithm: str, seeds: range, rounds: int, tmp: Path) -> list[str]:
    """The Markdown section for one algorithm: both runtimes over the seeds, and a verdict."""
    runs: dict[str, list[dict]] = {"lpfl simulator": [], "Flower (simulation runtime)": []}
    for seed in seeds:
        run = SETTINGS | ALGORITHMS[algorithm] | dict(rounds=rounds, seed=seed, algorithm=algorithm)
        runs["lpfl simulator"].append(simulator(run))
        runs["Flower (simulation runtime)"].append(flower(run, tmp / f"{algorithm}-seed{seed}"))
        print(algorithm, {name: r[-1]["final_accuracy_mean"] for name, r in runs.items()})
    extra = ", ".join(f"{k.replace('_', '-')} {v}" for k, v in ALGORITHMS[algorithm].items())
    return [
        f"## {algorithm}" + (f" ({extra})" if extra else ""),
        "",
        "| runs on | final accuracy per seed | mean ± std | last round, mean ± std |",
        "|---|---|---|---|",
        *(row(name, r) for name, r in runs.items()),
        "",
        verdict(*runs.values()),
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--first-seed", type=int, default=0, help="a replication takes seeds no earlier run used"
    )
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument(
        "--algorithms", nargs="+", choices=list(ALGORITHMS), default=list(ALGORITHMS)
    )
    parser.add_argument("--out", default="results/flower-parity.md")
    args = parser.parse_args()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    with tempfile.TemporaryDirectory() as tmp:
        sections = [
            line for a in args.algorithms for line in compare(a, seeds, args.rounds, Path(tmp))
        ]
    command = "FLWR_TELEMETRY_ENABLED=0 .venv/bin/python experiments/flower_parity.py"
    if args.seeds != 3 or args.rounds != 30:
        command += f" --seeds {args.seeds} --rounds {args.rounds}"
    if args.first_seed:
        command += f" --first-seed {args.first_seed}"
    if args.algorithms != list(ALGORITHMS):
        command += f" --algorithms {' '.join(args.algorithms)}"
    if args.out != "results/flower-parity.md":
        command += f" --out {args.out}"
    text = "\n".join(
        [
            "# lpfl on Flower vs lpfl's simulator: accuracy parity",
            "",
            f"digits, MLP, {SETTINGS['clients']} clients (one Flower node each), "
            f"{SETTINGS['participation']:.0%} per round, α = {SETTINGS['alpha']}, "
            f"{args.rounds} rounds, {SETTINGS['local_epochs']} local epochs, batch 32, "
            f"8 bits + moving average {SETTINGS['moving_average']}; seeds {seeds[0]}–{seeds[-1]}; "
            "each method with its default settings (sub-model budgets as given). "
            "Final accuracy = mean test accuracy of the last 5 rounds, in %.",
            f"Device: CPU ({platform.machine()}, {os.cpu_count()} cores), "
            f"{datetime.date.today()}. Command: `{command}`",
            "",
            *sections,
        ]
    )
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
