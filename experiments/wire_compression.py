"""What the lossless stage saves on real client updates (issue 4).

Runs a few rounds of low-precision FedAvg with the ConvNet and taps every client
upload; each upload is re-encoded (bit-identically: the weights already lie on the
grid) with no compression, zlib and lzma, and the sizes are compared with fp32.

    .venv/bin/python experiments/wire_compression.py [--data-dir ../shared/data] [--rounds 3]

Writes results/wire-compression.md.
"""

from __future__ import annotations

import argparse
import datetime
import platform
from collections import defaultdict
from pathlib import Path

from lpfl.config import make_config
from lpfl.engine import run_simulation
from lpfl.wire import WireFormat, decode, encode, fp32_bytes

COMPRESSIONS = ("none", "zlib", "lzma")


def measure(dataset: str, bits: int, block: str, args: argparse.Namespace) -> dict[str, float]:
    """Mean upload size as a fraction of fp32, for each lossless stage."""
    sizes: dict[str, list[int]] = defaultdict(list)
    fp32: list[int] = []

    def tap(_round: int, _client: int, payload: bytes) -> None:
        state = decode(payload)
        fp32.append(fp32_bytes(state))
        for c in COMPRESSIONS:
            sizes[c].append(len(encode(state, WireFormat(bits, block, "nearest", compression=c))))

    cfg = make_config(
        dataset=dataset, data_dir=args.data_dir, model="convnet", clients=80,
        participation=args.participation, rounds=args.rounds, bits=bits, weight_block=block,
        moving_average=0.9, seed=0,
    )  # fmt: skip
    run_simulation(cfg, progress=False, log=lambda _m: None, on_upload=tap)
    return {c: sum(v) / sum(fp32) for c, v in sizes.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--participation", type=float, default=0.05)
    parser.add_argument("--out", default="results/wire-compression.md")
    args = parser.parse_args()
    paper = {8: "25 %", 6: "18.75 %", 5: "15.6 %", 4: "12.5 %"}
    lines = [
        "# Lossless stage on real client updates",
        "",
        f"ConvNet, 80 clients, {args.participation:.0%} per round, {args.rounds} rounds, "
        "α = 0.04, λ = 0.9, seed 0; every client upload re-encoded with each stage. "
        f"CPU ({platform.machine()}), {datetime.date.today()}.",
        f"Command: `.venv/bin/python experiments/wire_compression.py --rounds {args.rounds} "
        f"--participation {args.participation}`",
        "",
        "| dataset | bits | blocks | paper (bits/32) | packed | + zlib | + lzma |",
        "|---|---|---|---|---|---|---|",
    ]
    for dataset in ("fmnist", "cifar10"):
        for block in ("B", "BC"):
            for bits in (8, 6, 4):
                r = measure(dataset, bits, block, args)
                cells = " | ".join(f"{100 * r[c]:.2f} %" for c in COMPRESSIONS)
                lines.append(f"| {dataset} | {bits} | {block} | {paper[bits]} | {cells} |")
                print(lines[-1], flush=True)
    Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
