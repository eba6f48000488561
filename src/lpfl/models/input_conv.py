"""A model's first convolution, with its own rule for a stack of clients.

Under ``vmap`` (the vectorized engine trains a round's clients as one stack) torch turns
a convolution into a grouped one, one group per client. On an H200, a fifth of the
paper's ConvNet's 8-bit step went to 32 serial float32 GEMMs of 180 µs each, one per
client (``results/gpu-h200-2026-11-27/step-profile.txt``): by their count a single
layer's weight gradient, and the input layer's, since the other two layers' went to
one grouped TF32 kernel each. With 1-3 input channels the unfolded input (im2col) is
barely larger than the activations the layer writes anyway, so the stacked layer
becomes a few batched matrix products over every client and sample at once instead.

A single client (the sequential engine, the server) runs torch's own convolution and
its own backward, as a plain ``nn.Conv2d`` does.

The unfolding is a strided view of the padded input copied once (``_unfold``), not
``F.unfold``: on CUDA that launches one kernel per image, 1024 a step for 32 clients x
batch 32, and took 4 ms of an 8-bit CIFAR-10 step on the H200
(``results/gpu-h200-2026-11-27b``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd import Function

Geometry = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]  # stride, padding, dilation


class _Conv(Function):
    """One client's convolution; its vmap rule hands a stack of clients to ``_StackedConv``."""

    @staticmethod
    def forward(x, weight, bias, geometry: Geometry):  # type: ignore[override]
        stride, padding, dilation = geometry
        return F.conv2d(x, weight, bias, stride, padding, dilation)

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        x, weight, bias, ctx.geometry = inputs
        ctx.has_bias = bias is not None
        ctx.save_for_backward(x, weight)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        """torch's convolution backward, called as autograd calls it for ``F.conv2d``."""
        x, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.geometry
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias]
        bias_sizes = [weight.shape[0]] if ctx.has_bias else None
        gx, gw, gb = torch.ops.aten.convolution_backward(
            grad, x, weight, bias_sizes, stride, padding, dilation, False, [0, 0], 1, mask
        )
        return gx, gw, gb if ctx.needs_input_grad[2] else None, None

    @staticmethod
    def vmap(info, in_dims, x, weight, bias, geometry):  # type: ignore[override]
        def stacked(t: Tensor, dim: int | None) -> Tensor:
            return t.movedim(dim, 0) if dim is not None else t.expand(info.batch_size, *t.shape)

        x, weight = stacked(x, in_dims[0]), stacked(weight, in_dims[1])
        bias = None if bias is None else stacked(bias, in_dims[2])
        return _StackedConv.apply(x, weight, bias, geometry), 0


def _unfold(x: Tensor, kernel: tuple[int, int], geometry: Geometry) -> Tensor:
    """``F.unfold(x, kernel, dilation, padding, stride)`` of (N, C, H, W) as one copy:
    (N, C*kh*kw, L) with the same layout and values."""
    (sh, sw), (ph, pw), (dh, dw) = geometry
    xp = F.pad(x, (pw, pw, ph, ph))
    n, c, hp, wp = xp.shape
    ho = (hp - dh * (kernel[0] - 1) - 1) // sh + 1
    wo = (wp - dw * (kernel[1] - 1) - 1) // sw + 1
    s_n, s_c, s_h, s_w = xp.stride()
    windows = xp.as_strided(
        (n, c, kernel[0], kernel[1], ho, wo), (s_n, s_c, s_h * dh, s_w * dw, s_h * sh, s_w * sw)
    )
    return windows.reshape(n, c * kernel[0] * kernel[1], ho * wo)


def _fold(
    cols: Tensor, size: tuple[int, int], kernel: tuple[int, int], geometry: Geometry
) -> Tensor:
    """``F.fold(cols, size, kernel, dilation, padding, stride)`` (col2im), the inverse
    layout of ``_unfold``, as one strided add per kernel position: (N, C*kh*kw, L) to
    (N, C, H, W).

    On CUDA ``F.fold`` launches a kernel per image, as ``F.unfold`` does; here a 3x3
    kernel takes nine adds over the whole stack. On the CPU the adds run in ``F.fold``'s
    order, so the sums are its own bit for bit.
    """
    (sh, sw), (ph, pw), (dh, dw) = geometry
    (kh, kw), (h, w) = kernel, size
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    n, c = cols.shape[0], cols.shape[1] // (kh * kw)
    blocks = cols.view(n, c, kh, kw, ho, wo)
    out = cols.new_zeros(n, c, h + 2 * ph, w + 2 * pw)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)
            columns = slice(j * dw, j * dw + sw * (wo - 1) + 1, sw)
            out[:, :, rows, columns] += blocks[:, :, i, j]
    return out[:, :, ph : ph + h, pw : pw + w]


class _StackedConv(Function):
    """K clients' convolutions: x (K, B, C, H, W), weight (K, O, C, kh, kw), bias (K, O)."""

    @staticmethod
    def forward(ctx, x, weight, bias, geometry: Geometry):  # type: ignore[override]
        k, b, _, h, w = x.shape
        o, kernel = weight.shape[1], weight.shape[-2:]
        cols = _unfold(x.flatten(0, 1), kernel, geometry)  # (K*B, C*kh*kw, L)
        cols = cols.view(k, b, *cols.shape[1:])
        out = torch.matmul(weight.reshape(k, 1, o, -1), cols)  # (K, B, O, L)
        if bias is not None:
            out = out + bias.view(k, 1, o, 1)
        ctx.save_for_backward(cols, weight)
        ctx.geometry, ctx.size, ctx.has_bias = geometry, (h, w), bias is not None
        (stride, padding, dilation) = geometry
        ho = (h + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
        return out.view(k, b, o, ho, -1)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        cols, weight = ctx.saved_tensors
        k, b, o = grad.shape[:3]
        g = grad.reshape(k, b, o, -1)  # (K, B, O, L)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gcols = torch.matmul(weight.reshape(k, 1, o, -1).transpose(-1, -2), g)
            gx = _fold(gcols.flatten(0, 1), ctx.size, weight.shape[-2:], ctx.geometry)
            gx = gx.view(k, b, *gx.shape[1:])
        if ctx.needs_input_grad[1]:
            # Per client and sample, then summed over samples: the sum over a sample's
            # positions is each product's own, so the batch splits the work many ways.
            gw = torch.matmul(g, cols.transpose(-1, -2)).sum(1).view(weight.shape)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = g.sum((1, 3))
        return gx, gw, gb, None


class InputConv2d(nn.Conv2d):
    """``nn.Conv2d`` for a model's input layer (groups=1): the same parameters and values."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.groups != 1 or self.padding_mode != "zeros" or isinstance(self.padding, str):
            raise ValueError("InputConv2d takes groups=1, zero padding and numeric padding only")

    def forward(self, x: Tensor) -> Tensor:
        geometry = (self.stride, self.padding, self.dilation)
        return _Conv.apply(x, self.weight, self.bias, geometry)  # type: ignore[arg-type]
