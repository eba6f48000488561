"""A candidate for the ConvNet's GroupNorm (one group per channel) + affine + ReLU over a
stack of clients: one Triton kernel forward, one backward.

Under ``vmap`` torch runs this block as GroupNorm without affine, then a multiply and an
add for each client's affine, then ReLU: about ten passes over a stage's activations
forward and as many backward; on the H200 GroupNorm alone was 12 % of an 8-bit step and
the affine's multiply and add several more (``results/gpu-h200-2026-11-27``). Here one
program normalises one (client, sample, channel) row of H*W values in registers:
forward reads x once and writes the output once; backward reads the error and x once
and writes the input's error once, with each row's share of the affine's gradients
summed over samples afterwards (no atomics, so the sums do not depend on scheduling).

``benchmarks/stage_ops.py`` times it against torch on a GPU. Run this file to check it:
on a GPU its values against torch; on the CPU the same values under Triton's
interpreter (in a child process), and the kernels built for an H100 (sm_90), so a
kernel the GPU compiler would refuse fails here and not in a GPU slot:

    python benchmarks/fused_norm.py

The statistics are computed in another order than torch's, so values agree to float32
rounding, not bit for bit; the engine would take this only after a GPU has shown it
faster.
"""

from __future__ import annotations

import os
import subprocess
import sys

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch import Tensor
from torch.autograd import Function
from torch.func import vmap

EPS = 1e-5  # nn.GroupNorm's default


@triton.jit
def _affine_index(row, BC, C):
    """The (client, channel) of a row ordered (client, sample, channel): its affine's index."""
    return (row // BC) * C + row % C


@triton.jit
def _forward_kernel(
    x_ptr, w_ptr, b_ptr, out_ptr, mean_ptr, rstd_ptr, L, BC, C, eps, BLOCK: tl.constexpr
):  # fmt: skip
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < L
    x = tl.load(x_ptr + row * L + cols, mask=mask, other=0.0)
    mean = tl.sum(x, axis=0) / L
    centred = tl.where(mask, x - mean, 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, axis=0) / L + eps)
    a = _affine_index(row, BC, C)
    y = centred * rstd * tl.load(w_ptr + a) + tl.load(b_ptr + a)
    tl.store(out_ptr + row * L + cols, tl.maximum(y, 0.0), mask=mask)
    tl.store(mean_ptr + row, mean)
    tl.store(rstd_ptr + row, rstd)


@triton.jit
def _backward_kernel(
    g_ptr, x_ptr, w_ptr, b_ptr, mean_ptr, rstd_ptr, dx_ptr, dw_ptr, db_ptr, L, BC, C,
    BLOCK: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < L
    x = tl.load(x_ptr + row * L + cols, mask=mask, other=0.0)
    g = tl.load(g_ptr + row * L + cols, mask=mask, other=0.0)
    rstd = tl.load(rstd_ptr + row)
    xhat = tl.where(mask, (x - tl.load(mean_ptr + row)) * rstd, 0.0)
    a = _affine_index(row, BC, C)
    w = tl.load(w_ptr + a)
    gy = tl.where(xhat * w + tl.load(b_ptr + a) > 0, g, 0.0)  # ReLU passes where y > 0
    tl.store(dw_ptr + row, tl.sum(gy * xhat, axis=0))
    tl.store(db_ptr + row, tl.sum(gy, axis=0))
    dxhat = gy * w
    dx = rstd * (dxhat - tl.sum(dxhat, axis=0) / L - xhat * (tl.sum(dxhat * xhat, axis=0) / L))
    tl.store(dx_ptr + row * L + cols, dx, mask=mask)


class FusedNormReLU(Function):
    """relu(group_norm(x_k, C, w_k, b_k)) for every client k: x (K, B, C, H, W), w and b (K, C)."""

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, b: Tensor) -> Tensor:  # type: ignore[override]
        x, w, b = x.contiguous(), w.contiguous(), b.contiguous()
        k, batch, c = x.shape[:3]
        rows, length = k * batch * c, x[0, 0, 0].numel()
        out = torch.empty_like(x)
        mean = torch.empty(rows, device=x.device)
        rstd = torch.empty(rows, device=x.device)
        block = triton.next_power_of_2(length)
        _forward_kernel[(rows,)](x, w, b, out, mean, rstd, length, batch * c, c, EPS, BLOCK=block)
        ctx.save_for_backward(x, w, b, mean, rstd)
        return out

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # type: ignore[override]
        x, w, b, mean, rstd = ctx.saved_tensors
        k, batch, c = x.shape[:3]
        rows, length = k * batch * c, x[0, 0, 0].numel()
        dx = torch.empty_like(x)
        dw_rows = torch.empty(rows, device=x.device)
        db_rows = torch.empty(rows, device=x.device)
        _backward_kernel[(rows,)](
            g.contiguous(), x, w, b, mean, rstd, dx, dw_rows, db_rows, length, batch * c, c,
            BLOCK=triton.next_power_of_2(length),
        )  # fmt: skip
        return dx, dw_rows.view(k, batch, c).sum(1), db_rows.view(k, batch, c).sum(1)


def fused(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    return FusedNormReLU.apply(x, w, b)


def torch_vmap(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """What the engine runs today: the per-client block mapped over the stack."""
    return vmap(lambda xx, ww, bb: F.relu(F.group_norm(xx, ww.shape[0], ww, bb, EPS)))(x, w, b)


def check(device: str = "cpu") -> float:
    """The largest relative difference from torch over the output and the three gradients,
    on a small stack with unequal sides (so masking is exercised)."""
    gen = torch.Generator(device).manual_seed(0)
    x = torch.randn(2, 3, 4, 5, 6, device=device, generator=gen).requires_grad_()
    w = torch.randn(2, 4, device=device, generator=gen).requires_grad_()
    b = torch.randn(2, 4, device=device, generator=gen).requires_grad_()
    g = torch.randn(2, 3, 4, 5, 6, device=device, generator=gen)
    results = []
    for fn in (fused, torch_vmap):
        out = fn(x, w, b)
        results.append([out.detach(), *torch.autograd.grad(out, (x, w, b), g)])
    return max(float((a - r).abs().max() / r.abs().max()) for a, r in zip(*results, strict=True))


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
        worst = check("cuda" if torch.cuda.is_available() else "cpu")
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
