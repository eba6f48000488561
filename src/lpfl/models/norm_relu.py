"""GroupNorm followed by ReLU as one layer, so that a stack of clients on CUDA can run
both as one Triton kernel each way (``triton_norm.py``).

On the H200 the ConvNet's GroupNorm and ReLU over 32 clients took about 7.8 ms of an
8-bit step under ``vmap`` and 2.0 ms fused (``results/gpu-h200-2026-11-27b``). One
client (the sequential engine, the server, any CPU run) gets torch's own ops and values:
the layer only changes what a stack on CUDA runs, where the fused affine may put an
output within an ulp of zero on the other side of the ReLU (see ``triton_norm.py``).
``--no-fused-norm`` (``engine/numerics.py``) keeps torch's ops there too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd import Function

FUSED = {"on": True}
# The kernels hold a row of H*W values in registers: the ConvNet's largest is 32x32.
MAX_FUSED_ROW = 4096


class _NormReLU(Function):
    """One client's relu(group_norm(x)), one group per channel, as torch computes it; its
    vmap rule hands a stack of clients to the Triton kernels."""

    @staticmethod
    def forward(x: Tensor, w: Tensor, b: Tensor, eps: float):  # type: ignore[override]
        n, c = x.shape[:2]
        y, mean, rstd = torch.native_group_norm(x, w, b, n, c, x[0, 0].numel(), c, eps)
        return y.relu(), mean, rstd

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        x, w, _, _ = inputs
        out, mean, rstd = output
        ctx.save_for_backward(x, w, out, mean, rstd)
        ctx.mark_non_differentiable(mean, rstd)

    @staticmethod
    def backward(ctx, g: Tensor, _mean: Tensor, _rstd: Tensor):  # type: ignore[override]
        """torch's ReLU and GroupNorm backward, called as autograd calls them."""
        x, w, out, mean, rstd = ctx.saved_tensors
        n, c = x.shape[:2]
        gy = torch.ops.aten.threshold_backward(g, out, 0)
        gx, gw, gb = torch.ops.aten.native_group_norm_backward(
            gy, x, mean, rstd, w, n, c, x[0, 0].numel(), c, list(ctx.needs_input_grad[:3])
        )
        return gx, gw, gb, None

    @staticmethod
    def vmap(info, in_dims, x, w, b, eps):  # type: ignore[override]
        from .triton_norm import StackedNormReLU  # imports Triton, which only CUDA needs

        def stacked(t: Tensor, dim: int | None) -> Tensor:
            return t.movedim(dim, 0) if dim is not None else t.expand(info.batch_size, *t.shape)

        x, w, b = stacked(x, in_dims[0]), stacked(w, in_dims[1]), stacked(b, in_dims[2])
        return StackedNormReLU.apply(x, w, b, eps), (0, 0, 0)


class GroupNormReLU(nn.GroupNorm):
    """``relu(nn.GroupNorm(C, C)(x))`` of (B, C, H, W): the parameters and values of the two
    layers it replaces."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, channels, affine=True)

    def forward(self, x: Tensor) -> Tensor:
        if x.is_cuda and FUSED["on"] and x.dim() == 4 and x[0, 0].numel() <= MAX_FUSED_ROW:
            return _NormReLU.apply(x, self.weight, self.bias, self.eps)[0]
        return F.relu(F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps))
