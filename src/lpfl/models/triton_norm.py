"""GroupNorm with one group per channel, affine and ReLU over a stack of clients: one
Triton kernel forward, one backward (CUDA only; ``norm_relu.py`` decides when).

Under ``vmap`` torch runs this block as GroupNorm without affine, a multiply and an add
for each client's affine, then ReLU: about ten passes over a stage's activations each
way. Here one program normalises one (client, sample, channel) row of H*W values in
registers: forward reads x once and writes the output once; backward reads the error
and x once and writes the input's error once, with each row's share of the affine's
gradients summed over samples afterwards (no atomics, so the sums do not depend on
scheduling). On the H200 this was 2-6x faster than torch's per stage
(``results/gpu-h200-2026-11-27b``).

The affine is one fused multiply-add where torch rounds twice, so an output within an
ulp of zero may take the other side of the ReLU; the gradients are torch's for the
kernel's own mask (``benchmarks/fused_norm.py`` checks both).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.autograd import Function


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


class StackedNormReLU(Function):
    """relu(group_norm(x_k, C, w_k, b_k)) for every client k: x (K, B, C, H, W), w and b
    (K, C); also returns each (client, sample, channel)'s mean and 1/std, (K, B, C)."""

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, b: Tensor, eps: float):  # type: ignore[override]
        x, w, b = x.contiguous(), w.contiguous(), b.contiguous()
        k, batch, c = x.shape[:3]
        rows, length = k * batch * c, x[0, 0, 0].numel()
        out = torch.empty_like(x)
        mean = torch.empty(k, batch, c, device=x.device)
        rstd = torch.empty(k, batch, c, device=x.device)
        block = triton.next_power_of_2(length)
        _forward_kernel[(rows,)](x, w, b, out, mean, rstd, length, batch * c, c, eps, BLOCK=block)
        ctx.save_for_backward(x, w, b, mean, rstd)
        ctx.mark_non_differentiable(mean, rstd)
        return out, mean, rstd

    @staticmethod
    def backward(ctx, g: Tensor, _mean: Tensor, _rstd: Tensor):  # type: ignore[override]
        x, w, b, mean, rstd = ctx.saved_tensors
        k, batch, c = x.shape[:3]
        rows, length = k * batch * c, x[0, 0, 0].numel()
        dx = torch.empty_like(x)
        dw_rows = torch.empty(k, batch, c, device=x.device)
        db_rows = torch.empty(k, batch, c, device=x.device)
        _backward_kernel[(rows,)](
            g.contiguous(), x, w, b, mean, rstd, dx, dw_rows, db_rows, length, batch * c, c,
            BLOCK=triton.next_power_of_2(length),
        )  # fmt: skip
        return dx, dw_rows.sum(1), db_rows.sum(1), None
