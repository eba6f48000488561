"""Milliseconds per block rounding call, eager ops vs the fused kernels, on the tensors
of one vectorized ConvNet step in the paper's CIFAR-10 setting (32 clients, batch 32).

    .venv/bin/python benchmarks/rounding_speed.py               # this device, full sizes
    .venv/bin/python benchmarks/rounding_speed.py --clients 2   # CPU: fewer clients

The fused path is lpfl's Triton kernels on CUDA and ``torch.compile`` on the CPU; the
first fused call (which compiles) is reported apart from the median, and the fused
call rounding to nearest beside it (no noise to draw: a stochastic call near it is
bound by memory, not by drawing). Each row also
says whether the two paths gave identical values rounding to nearest (the Triton
kernels draw their stochastic noise from another stream than the eager ops). Prints
one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
from provenance import provenance

from lpfl.quant import block_quantize
from lpfl.quant.block import fused_enabled, use_fused


def tensors(k: int, batch: int, width: int) -> dict[str, tuple[tuple[int, ...], str]]:
    """Shape and block of each kind of tensor a ConvNet step rounds, stacked over k clients."""
    return {
        "activation, first stage": ((k, batch, width, 32, 32), "tensor"),
        "activation, last stage": ((k, batch, width, 8, 8), "tensor"),
        "conv weight or gradient": ((k, width, width, 3, 3), "BC"),
        "classifier weight": ((k, 10, width * 4 * 4), "BC"),
        "bias or norm parameter": ((k, width), "BC"),
    }


def timed(
    x: torch.Tensor, bits: int, blk: str, repeats: int, rounding: str = "stochastic"
) -> tuple[float, list[float]]:
    """(first call's ms, the following calls' ms) of a rounding."""
    times, cuda = [], x.is_cuda
    for _ in range(repeats + 1):
        if cuda:
            torch.cuda.synchronize()
        tic = time.perf_counter()
        g = torch.Generator(x.device).manual_seed(0)
        block_quantize(x, bits, blk, rounding, g, batch_dims=1)
        if cuda:
            torch.cuda.synchronize()
        times.append((time.perf_counter() - tic) * 1e3)
    return times[0], times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--bits", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    out: dict = {
        **provenance(device),
        "fused_path": "triton" if cuda else "torch.compile",
        "ms_per_call": {},
    }
    for name, (shape, blk) in tensors(args.clients, args.batch, args.width).items():
        x = torch.randn(shape, device=device)
        row: dict = {"shape": "x".join(map(str, shape)), "block": blk}
        values = {}
        for path in ("eager", "fused"):
            use_fused(path == "fused")
            first, rest = timed(x, args.bits, blk, args.repeats)
            values[path] = block_quantize(x, args.bits, blk, "nearest", batch_dims=1)
            row[path] = round(statistics.median(rest), 3)
            row[f"{path}_first_call"] = round(first, 1)
        # The same kernels without noise: how much of a stochastic call drawing costs.
        row["fused_nearest"] = round(
            statistics.median(timed(x, args.bits, blk, args.repeats, "nearest")[1]), 3
        )
        row["stayed_fused"] = fused_enabled()  # False: the kernel failed and lpfl went eager
        use_fused(False)
        row["speedup"] = round(row["eager"] / row["fused"], 2)
        row["identical_nearest"] = bool(torch.equal(values["eager"], values["fused"]))
        out["ms_per_call"][name] = row
        print(json.dumps({name: row}), file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
