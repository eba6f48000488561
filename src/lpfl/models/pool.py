"""2x2 average pooling whose backward is a broadcast of the error.

torch's ``avg_pool2d`` backward is a general kernel (any window, stride, padding) that
took 1.1 ms a call on the paper's first-stage activations stacked over 32 clients, 12 %
of an 8-bit step's kernel time on the H200; ``g / 4`` repeated over each window is the
same values exactly (a quarter is a power of two) at a third of the time
(``benchmarks/stage_ops.py``, ``results/gpu-h200-2026-11-27b``). Under ``vmap`` the
stack of clients is folded into the batch, so one call serves every client.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd import Function


class _Pool(Function):
    """``F.avg_pool2d(x, 2)`` of (..., H, W), for one client or a folded stack."""

    @staticmethod
    def forward(x: Tensor) -> Tensor:  # type: ignore[override]
        return F.avg_pool2d(x, 2)

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        ctx.size = inputs[0].shape[-2:]

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:  # type: ignore[override]
        *lead, h, w = g.shape
        quarter = (g * 0.25)[..., :, None, :, None].expand(*lead, h, 2, w, 2)
        dx = quarter.reshape(*lead, 2 * h, 2 * w)
        rows, cols = ctx.size  # an odd side's last row or column fed no window
        if (rows, cols) == (2 * h, 2 * w):
            return dx
        return F.pad(dx, (0, cols - 2 * w, 0, rows - 2 * h))

    @staticmethod
    def vmap(info, in_dims, x):  # type: ignore[override]
        x = x.movedim(in_dims[0], 0)
        return _Pool.apply(x.flatten(0, 1)).unflatten(0, x.shape[:2]), 0


class AvgPool2x2(nn.Module):
    """``nn.AvgPool2d(2)`` on 3-d or 4-d inputs: the same values forward and backward."""

    def forward(self, x: Tensor) -> Tensor:
        return _Pool.apply(x)
