"""Seconds per round, sequential vs vectorized engine, at 32 bits and at 8 bits + moving average.

    .venv/bin/python benchmarks/engine_speed.py                 # digits demo settings (CPU)
    .venv/bin/python benchmarks/engine_speed.py --paper fmnist  # the paper's setting, for a GPU

Prints one JSON object; ratios are measured in the same process, one setting after
the other, so compare those rather than absolute times across machines.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics

import torch

from lpfl.cli import DEMO_SETTINGS
from lpfl.config import make_config
from lpfl.engine import run_simulation

VARIANTS = {"32bit": dict(bits=32, moving_average=0.0), "8bit_ma": dict(bits=8, moving_average=0.9)}


def settings(args: argparse.Namespace) -> dict:
    if args.paper:
        return dict(
            dataset=args.paper, data_dir=args.data_dir, model="convnet", clients=80,
            participation=0.4, batch_size=32, local_epochs=1, alpha=0.04, rounds=args.rounds,
        )  # fmt: skip
    return DEMO_SETTINGS | {"rounds": args.rounds}


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"CPU {platform.machine()}, {os.cpu_count()} cores"


def seconds_per_round(cfg_kwargs: dict) -> float:
    rec = run_simulation(make_config(**cfg_kwargs), progress=False, log=lambda _m: None)
    return statistics.median(r.seconds for r in rec.rounds[1:])  # round 1 warms up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper", choices=("fmnist", "cifar10"))
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    base = settings(args) | {"device": args.device}
    out: dict = {
        "setting": args.paper or "digits-demo",
        "device": device_name(),
        "threads": torch.get_num_threads(),
        "date": datetime.date.today().isoformat(),
        "command": "benchmarks/engine_speed.py " + (f"--paper {args.paper}" if args.paper else ""),
        "seconds_per_round": {},
    }
    for name, variant in VARIANTS.items():
        for engine in ("sequential", "vectorized"):
            s = seconds_per_round(base | variant | {"engine": engine})
            out["seconds_per_round"][f"{engine}_{name}"] = round(s, 4)
        spr = out["seconds_per_round"]
        out[f"speedup_{name}"] = round(spr[f"sequential_{name}"] / spr[f"vectorized_{name}"], 2)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
