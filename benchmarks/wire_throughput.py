"""Encode/decode throughput of lpfl.wire on the ConvNet's state_dict, in fp32-equivalent MB/s.

Throughput is counted against the bytes the same tensors take as raw float32, so
every bit width is measured against the same amount of model, and quantization
(inside encode) counts toward the time. Run: ``python benchmarks/wire_throughput.py``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch

from lpfl.models import build_model
from lpfl.wire import WireFormat, decode, encode, fp32_bytes

MODELS = {"convnet-fmnist": (1, 28), "convnet-cifar10": (3, 32)}
BITS = (32, 8, 6, 5, 4)
BLOCK = "B"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: first calls pay for allocation and lazy initialisation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=31)
    args = parser.parse_args()

    print(f"device: {cpu_model()}, {os.cpu_count()} logical CPUs")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()} (machine default)")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"median of {args.repeats} repeats; MB = 1e6 bytes of fp32-equivalent model\n")
    header = f"{'model':<16}{'format':>10}{'bytes':>10}{'% fp32':>8}"
    print(header + f"{'encode':>10}{'decode':>10}{'both':>10}  MB/s")
    torch.manual_seed(0)
    for name, (channels, size) in MODELS.items():
        state = build_model("convnet", channels, size, 10).state_dict()
        baseline = fp32_bytes(state)
        for bits in BITS:
            fmt = WireFormat(bits=bits, block=BLOCK)
            payload = encode(state, fmt)
            t_enc = median_seconds(partial(encode, state, fmt), args.repeats)
            t_dec = median_seconds(partial(decode, payload), args.repeats)
            label = "fp32" if bits == 32 else f"bfp{bits}/{BLOCK}"
            print(
                f"{name:<16}{label:>10}{len(payload):>10}{100 * len(payload) / baseline:>7.2f}%"
                f"{baseline / t_enc / 1e6:>10.0f}{baseline / t_dec / 1e6:>10.0f}"
                f"{baseline / (t_enc + t_dec) / 1e6:>10.0f}"
            )


if __name__ == "__main__":
    main()
