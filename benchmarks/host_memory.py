"""What keeping freed memory in the process (``engine/host_memory.py``) buys on the CPU.

    .venv/bin/python benchmarks/host_memory.py --json results/host-memory-cpu.json

Digits demo settings, both engines, at 32 bits and at 8 bits + moving average (fused
and eager rounding), each run in a fresh process with glibc's malloc as it comes
(``LPFL_MALLOC=default``) and as lpfl tunes it, alternating, ``--repeats`` times.
Reports the median seconds per round (first round left out), the page faults of the
whole process and its peak memory, and the engines' ratio under each setting.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from provenance import provenance

RUN = """
import json, resource, statistics, sys
from lpfl.cli import DEMO_SETTINGS
from lpfl.config import make_config
from lpfl.engine import run_simulation
settings = json.loads(sys.argv[1])
rec = run_simulation(make_config(**DEMO_SETTINGS | settings), progress=False, log=lambda _m: None)
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"round": statistics.median(r.seconds for r in rec.rounds[1:]),
                  "faults": usage.ru_minflt, "max_rss_mb": usage.ru_maxrss / 1024}))
"""
VARIANTS = {
    "32bit": dict(bits=32, moving_average=0.0),
    "8bit_ma_fused": dict(bits=8, moving_average=0.9, fused_quant="on"),
    "8bit_ma_eager": dict(bits=8, moving_average=0.9, fused_quant="off"),
}
MALLOC = {"default": {"LPFL_MALLOC": "default"}, "tuned": {}}


def run(settings: dict, malloc: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "LPFL_MALLOC"} | MALLOC[malloc]
    out = subprocess.run(
        [sys.executable, "-c", RUN, json.dumps(settings)],
        check=True, capture_output=True, text=True, env=env,
    ).stdout  # fmt: skip
    return json.loads(out.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    samples: dict[str, list[dict]] = {}
    for _ in range(args.repeats):
        for name, variant in VARIANTS.items():
            for engine in ("vectorized", "sequential"):
                for malloc in MALLOC:
                    settings = variant | dict(engine=engine, rounds=args.rounds, device="cpu")
                    key = f"{engine}_{name}_{malloc}"
                    samples.setdefault(key, []).append(run(settings, malloc))
                    print(key, samples[key][-1], file=sys.stderr, flush=True)
    median = {
        key: {m: round(statistics.median(s[m] for s in runs), 4) for m in runs[0]}
        for key, runs in samples.items()
    }
    ratios = {
        f"{name}_{malloc}": round(
            median[f"sequential_{name}_{malloc}"]["round"]
            / median[f"vectorized_{name}_{malloc}"]["round"],
            2,
        )
        for name in VARIANTS
        for malloc in MALLOC
    }
    out = {
        "setting": f"digits demo, {args.rounds} rounds, median of {args.repeats} processes",
        **provenance(),
        "median": median,
        "vectorized_over_sequential": ratios,
    }
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
