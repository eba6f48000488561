"""Milliseconds per forward + backward of the ConvNet's pooling and GroupNorm over a stack
of clients: what torch does under ``vmap`` against a candidate formulation of each.

    python benchmarks/stage_ops.py                        # a GPU: 32 clients x batch 32
    python benchmarks/stage_ops.py --clients 2 --batch 4  # a CPU smoke run

On the H200, an 8-bit step spent 12 % of its kernel time in ``avg_pool2d``'s backward
(1.1 ms a call, where writing its output takes about 0.15 ms) and another 12 % in
GroupNorm, whose per-client affine ``vmap`` applies as separate multiply and add passes
(``results/gpu-h200-2026-11-27/step-profile.txt``). The candidates:

- pooling whose backward is a plain broadcast of the error (``g / 4`` repeated over each
  2x2 window): the same values exactly;
- GroupNorm without affine on the folded stack, then the per-client affine in one
  ``addcmul``: the same values up to a multiply-add's rounding;
- on CUDA, GroupNorm + affine + ReLU as one Triton kernel each way (``fused_norm.py``),
  against torch's GroupNorm and ReLU under ``vmap``: the same values up to float32
  rounding of the statistics.

A candidate joins the engine only once a GPU has shown it faster: on the H200 the pooling
(1.9-3.2x) and the fused kernels (2.1-5.9x) did and are now ``models/pool.py`` and
``models/norm_relu.py``; the addcmul GroupNorm (1.1-1.3x) did not
(``results/gpu-h200-2026-11-27b``). Prints one JSON object; each row gives the largest
relative difference from torch's own (for the fused kernels, a handful of values at zero
that take the other ReLU side dominate it: ``fused_norm.py`` checks them properly).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F
from provenance import provenance
from stacked_timing import forward_backward_ms, stack_parser
from torch import Tensor
from torch.func import vmap

from lpfl.models.pool import AvgPool2x2

STAGES = {"stage 1": 32, "stage 2": 16, "stage 3": 8}  # the CIFAR-10 ConvNet's sides
WIDTH = 128


def pool_torch(x: Tensor) -> Tensor:
    return vmap(lambda xx: F.avg_pool2d(xx, 2))(x)


def pool_broadcast(x: Tensor) -> Tensor:
    """lpfl's pooling (``models/pool.py``): its vmap rule folds the stack into the batch."""
    return vmap(AvgPool2x2())(x)


def norm_torch(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    return vmap(lambda xx, ww, bb: F.group_norm(xx, WIDTH, ww, bb))(x, w, b)


def norm_addcmul(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    y = F.group_norm(x.flatten(0, 1), WIDTH).unflatten(0, x.shape[:2])
    return torch.addcmul(b[:, None, :, None, None], y, w[:, None, :, None, None])


def compare(
    name: str, ours: Callable, theirs: Callable, inputs: list[Tensor], repeats: int
) -> dict:
    ms_theirs, ref = forward_backward_ms(lambda: theirs(*inputs), inputs, repeats)
    ms_ours, got = forward_backward_ms(lambda: ours(*inputs), inputs, repeats)
    diff = max(
        float((a - r).abs().max() / r.abs().max().clamp(min=1e-30))
        for a, r in zip(got, ref, strict=True)
    )
    row = {
        "torch_vmap": round(ms_theirs, 3),
        "candidate": round(ms_ours, 3),
        "speedup": round(ms_theirs / ms_ours, 2),
        "max_relative_difference": diff,
    }
    print(json.dumps({name: row}), flush=True, file=sys.stderr)
    return row


def main() -> None:
    args = stack_parser(__doc__).parse_args()
    device = torch.device(args.device)
    out: dict = {**provenance(device), "clients": args.clients, "batch": args.batch, "ms": {}}
    for stage, side in STAGES.items():
        gen = torch.Generator(device).manual_seed(0)
        shape = (args.clients, args.batch, WIDTH, side, side)
        x = torch.randn(shape, device=device, generator=gen).requires_grad_()
        w = torch.randn(args.clients, WIDTH, device=device, generator=gen).requires_grad_()
        b = torch.randn(args.clients, WIDTH, device=device, generator=gen).requires_grad_()
        out["ms"][f"{stage} avg-pool"] = compare(
            f"{stage} avg-pool", pool_broadcast, pool_torch, [x], args.repeats
        )
        out["ms"][f"{stage} group-norm"] = compare(
            f"{stage} group-norm", norm_addcmul, norm_torch, [x, w, b], args.repeats
        )
        # Triton kernels: on CUDA, or on the CPU under Triton's (slow) interpreter.
        if device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1":
            import fused_norm  # imports Triton, which only this row needs

            out["ms"][f"{stage} group-norm + relu, fused"] = compare(
                f"{stage} group-norm + relu, fused",
                fused_norm.fused,
                fused_norm.torch_vmap,
                [x, w, b],
                args.repeats,
            )
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
