"""Wall time of the demo's 8-bit + moving average run (120 rounds), per engine and rounding.

    .venv/bin/python benchmarks/demo_wall.py --json results/demo-wall-cpu.json

Each run is a fresh process, timed from start to finish (data, set-up, compiling and all
rounds), so this is what a user waits for. The fused runs compile the rounding kernel
once first, untimed, so they measure torch's warm compile cache, the usual case after
the first run on a machine (a cold compile adds about 15 s on 2 cores). Both engines
reach the same accuracy whichever rounding is used (the kernels are bit-identical).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from provenance import provenance

RUN = """
import sys
from lpfl.cli import DEMO_SETTINGS
from lpfl.config import make_config
from lpfl.engine import run_simulation
cfg = make_config(**DEMO_SETTINGS | dict(device="cpu", bits=8, moving_average=0.9,
                  engine=sys.argv[1], fused_quant=sys.argv[2], rounds=int(sys.argv[3])))
rec = run_simulation(cfg, progress=False, log=lambda _m: None)
print(rec.rounds[-1].test_accuracy)
"""


def timed(engine: str, fused: str, rounds: int) -> tuple[float, float]:
    tic = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", RUN, engine, fused, str(rounds)],
                         check=True, capture_output=True, text=True).stdout  # fmt: skip
    return time.perf_counter() - tic, float(out.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=120)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    for engine in ("vectorized", "sequential"):  # fill the compile cache, untimed
        timed(engine, "on", 2)
    seconds, accuracy = {}, {}
    for fused in ("on", "off"):
        for engine in ("vectorized", "sequential"):
            key = f"{engine}_{'fused' if fused == 'on' else 'eager'}"
            seconds[key], accuracy[key] = timed(engine, fused, args.rounds)
            print(key, round(seconds[key], 1), "s", file=sys.stderr, flush=True)
    out = {
        "setting": f"digits demo, 8 bits + moving average, {args.rounds} rounds",
        **provenance(),
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "final_accuracy": accuracy,
        "speedup_fused": round(seconds["sequential_fused"] / seconds["vectorized_fused"], 2),
        "speedup_eager": round(seconds["sequential_eager"] / seconds["vectorized_eager"], 2),
    }
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
