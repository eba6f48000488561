"""Checks lpfl's GroupNorm (one group per channel) + affine + ReLU over a stack of clients,
one Triton kernel each way (``lpfl/models/triton_norm.py``), against torch's ops.

The kernels' affine is one fused multiply-add where torch rounds twice, so an output
within an ulp of zero may fall on the other side of the ReLU: on the H200 a handful of
the 134 M first-stage values did, which made the largest elementwise difference in dx
0.03-0.2 of dx's largest value (``results/gpu-h200-2026-11-27b``). So the check asks
two things: every value whose ReLU side differs is within rounding of zero, and the
output and gradients equal torch's for the kernels' own ReLU mask to float32 rounding.

On a GPU it checks the values at the ConvNet's three stages over 32 clients x batch 32;
on the CPU a small stack under Triton's interpreter (in a child process), and it builds
the kernels for an H100 (sm_90), so a kernel the GPU compiler would refuse fails here
and not in a GPU slot:

    python benchmarks/fused_norm.py

``benchmarks/stage_ops.py`` times the kernels against torch.
"""

from __future__ import annotations

import os
import subprocess
import sys

import torch
import torch.nn.functional as F
import triton
from torch import Tensor
from torch.func import vmap

from lpfl.models.triton_norm import StackedNormReLU, _backward_kernel, _forward_kernel

EPS = 1e-5  # nn.GroupNorm's default
# A small stack with unequal sides (masking exercised), then the ConvNet's three stages at
# the paper's 32 clients x batch 32.
SHAPES = [(2, 3, 4, 5, 6), *((32, 32, 128, side, side) for side in (8, 16, 32))]


def fused(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    return StackedNormReLU.apply(x, w, b, EPS)[0]


def torch_norm(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """Each client's GroupNorm with its affine, before the ReLU, mapped over the stack."""
    return vmap(lambda xx, ww, bb: F.group_norm(xx, ww.shape[0], ww, bb, EPS))(x, w, b)


def torch_vmap(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """What a stack ran before the fused kernels: the per-client block mapped over it."""
    return torch_norm(x, w, b).relu()


def check(device: str, shape: tuple[int, ...]) -> dict[str, float]:
    """Under a random error: how many values changed ReLU side and the largest of them
    relative to the largest output; then the output's and each gradient's largest
    difference from torch's (for the kernels' mask), relative to torch's largest value."""
    gen = torch.Generator(device).manual_seed(0)
    x = torch.randn(*shape, device=device, generator=gen).requires_grad_()
    w = torch.randn(shape[0], shape[2], device=device, generator=gen).requires_grad_()
    b = torch.randn(shape[0], shape[2], device=device, generator=gen).requires_grad_()
    g = torch.randn(*shape, device=device, generator=gen)
    out = fused(x, w, b)
    ours = [out.detach(), *torch.autograd.grad(out, (x, w, b), g)]
    y = torch_norm(x, w, b)
    passes = out.detach() > 0
    flipped = passes != (y.detach() > 0)
    theirs = [y.detach().relu(), *torch.autograd.grad(y, (x, w, b), g * passes)]
    scale = float(y.detach().abs().max())
    diffs = {
        "flipped": int(flipped.sum()),
        "flipped_largest": float(y.detach()[flipped].abs().max() / scale) if flipped.any() else 0.0,
    }
    for name, a, r in zip(("output", "dx", "dw", "db"), ours, theirs, strict=True):
        diffs[name] = float((a - r).abs().max() / r.abs().max())
    return diffs


def build_for_h100() -> None:
    """Compile both kernels for sm_90 with no GPU, as the launches above specialise them."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    ptr, i32 = "*fp32", "i32"
    forward = dict.fromkeys(["x_ptr", "w_ptr", "b_ptr", "out_ptr", "mean_ptr", "rstd_ptr"], ptr)
    forward |= {"L": i32, "BC": i32, "C": i32, "eps": "fp32", "BLOCK": "constexpr"}
    names = ["g_ptr", "x_ptr", "w_ptr", "b_ptr", "mean_ptr", "rstd_ptr", "dx_ptr", "dw_ptr"]
    backward = dict.fromkeys([*names, "db_ptr"], ptr)
    backward |= {"L": i32, "BC": i32, "C": i32, "BLOCK": "constexpr"}
    for kernel, signature in ((_forward_kernel, forward), (_backward_kernel, backward)):
        for block in (64, 256, 1024):  # the ConvNet's three stages
            source = ASTSource(kernel, signature, {"BLOCK": block})
            assert triton.compile(source, target=GPUTarget("cuda", 90, 32)).asm["cubin"]


def main() -> int:
    if torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1":
        # The interpreter would take hours over the paper's stacks: the small one there.
        shapes = SHAPES if torch.cuda.is_available() else SHAPES[:1]
        worst = 0.0
        for shape in shapes:
            diffs = check("cuda" if torch.cuda.is_available() else "cpu", shape)
            print(f"{shape}: {diffs}", flush=True)
            worst = max(worst, *(v for k, v in diffs.items() if k != "flipped"))
        print(f"largest relative difference from torch: {worst:.2e}")
        return 0 if worst < 1e-5 else 1
    # The interpreter replaces every kernel when Triton is imported: values in a child.
    env = os.environ | {"TRITON_INTERPRET": "1"}
    values = subprocess.run([sys.executable, __file__], env=env, check=False).returncode
    build_for_h100()
    print("both kernels build for sm_90")
    return values


if __name__ == "__main__":
    sys.exit(main())
