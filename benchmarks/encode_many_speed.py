"""Milliseconds to encode a round's uploads: one client at a time vs ``wire.encode_many``.

    .venv/bin/python benchmarks/encode_many_speed.py [--device cuda]

8-bit client models (weights on the BFP grid, as after training) for the digits MLP
(10 clients, the demo) and the paper's FMNIST ConvNet (32 clients). Checks that both
ways give the same bytes, then prints the median of 7 timings of each as JSON.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time

import torch

from lpfl.models import build_model
from lpfl.quant import block_quantize
from lpfl.wire import WireFormat, encode, encode_many

SETTINGS = {
    "digits MLP": (("mlp", 1, 8, 10), 10),
    "paper FMNIST ConvNet": (("convnet", 1, 28, 10), 32),
}


def one_by_one(states: list[dict[str, torch.Tensor]], fmt: WireFormat) -> list[bytes]:
    return [encode(s, fmt) for s in states]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    fmt = WireFormat(bits=8)
    out: dict = {
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "CPU",
        "date": datetime.date.today().isoformat(),
        "command": " ".join(["benchmarks/encode_many_speed.py", *sys.argv[1:]]),
        "ms_per_round": {},
    }
    g = torch.Generator().manual_seed(0)
    for name, (arch, clients) in SETTINGS.items():
        base = build_model(*arch).state_dict()
        states = [
            {
                n: block_quantize(
                    t + 0.01 * torch.randn(t.shape, generator=g), 8, "BC", "nearest"
                ).to(args.device)
                for n, t in base.items()
            }
            for _ in range(clients)
        ]
        if encode_many(states, fmt) != one_by_one(states, fmt):
            sys.exit(f"{name}: encode_many differs from encode")
        times: dict[str, list[float]] = {"one_by_one": [], "encode_many": []}
        for _ in range(7):
            for way, run in (("one_by_one", one_by_one), ("encode_many", encode_many)):
                tic = time.perf_counter()
                run(states, fmt)
                times[way].append(time.perf_counter() - tic)
        out["ms_per_round"][f"{name}, {clients} clients"] = {
            way: round(statistics.median(t) * 1e3, 1) for way, t in times.items()
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
