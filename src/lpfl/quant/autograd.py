"""Rounding inside the autograd graph: activations on the way forward, errors on the way back.

Models place an ``ActQuant`` wherever the reference rounds an activation. It is the
identity until ``attach_precision`` gives it formats, so one model class serves both
the low-precision clients and the full-precision global model on the server.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .block import block_quantize
from .formats import BlockFormat


def quantize(
    x: Tensor,
    fmt: BlockFormat,
    generator: torch.Generator | None = None,
    batch_dims: int = 0,
    check: bool = True,
) -> Tensor:
    """Round x in ``fmt``: the one entry point every role (weight, grad, activation) uses."""
    return block_quantize(x, fmt.bits, fmt.block, fmt.rounding, generator, batch_dims, check)


class _Round(torch.autograd.Function):
    """Rounding as one operation that ``vmap`` sees whole.

    Under ``vmap`` (the vectorized engine) its rule rounds the whole stack of clients
    in one call, each client with its own blocks, instead of tracing the rounding op
    by op; a client's NaN stays in its slice, and that client is dropped later.
    """

    @staticmethod
    def forward(x, fmt: BlockFormat, generator):  # type: ignore[override]
        return quantize(x, fmt, generator)

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        pass

    @staticmethod
    def vmap(info, in_dims, x, fmt, generator):  # type: ignore[override]
        stacked = x.movedim(in_dims[0], 0)
        return quantize(stacked, fmt, generator, batch_dims=1, check=False), 0


class _RoundForwardAndBackward(torch.autograd.Function):
    """Activation rounding forward, error rounding backward.

    ``setup_context`` and an explicit vmap rule let torch.func (grad, vmap) see through
    it, which the vectorized engine needs to train many clients in one batched step;
    the rule rounds the whole stack at once, like ``_Round``'s. (A generated rule would
    do the same work but costs about a millisecond of Python per call.)
    """

    @staticmethod
    def forward(x, act: BlockFormat, err: BlockFormat, generator):  # type: ignore[override]
        return quantize(x, act, generator)

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        _, _, ctx.err, ctx.generator = inputs

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        return _Round.apply(grad_out, ctx.err, ctx.generator), None, None, None

    @staticmethod
    def vmap(info, in_dims, x, act, err, generator):  # type: ignore[override]
        return _Round.vmap(info, in_dims[:1], x, act, generator)


class ActQuant(nn.Module):
    """A rounding point: quantizes the activation in forward and its error in backward."""

    def __init__(self) -> None:
        super().__init__()
        self.act: BlockFormat | None = None
        self.err: BlockFormat | None = None
        self.generator: torch.Generator | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.act is None or self.err is None:
            return x
        if self.act.full_precision and self.err.full_precision:
            return x
        return _RoundForwardAndBackward.apply(x, self.act, self.err, self.generator)

    def extra_repr(self) -> str:
        return "off" if self.act is None else f"act={self.act}, err={self.err}"


def attach_precision(
    model: nn.Module,
    act: BlockFormat | None,
    err: BlockFormat | None,
    generator: torch.Generator | None = None,
) -> int:
    """Switch every rounding point of ``model`` to these formats (None turns them off).

    Returns how many rounding points the model has, so callers can tell a model that
    has none (a mistake for low-precision training) from one that does.
    """
    points = [m for m in model.modules() if isinstance(m, ActQuant)]
    for point in points:
        point.act, point.err, point.generator = act, err, generator
    return len(points)
