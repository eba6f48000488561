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


class _RoundForwardAndBackward(torch.autograd.Function):
    """Activation rounding forward, error rounding backward, for one client.

    Nothing here looks for NaN/Inf: a block holding one comes out all NaN, the loss or
    the weights turn NaN, and the trainer rejects the client at the end of its
    training. Looking after every rounding would make a GPU wait for the host dozens
    of times a step.

    Under ``vmap`` (the vectorized engine maps a client's forward over the stacked
    clients) its rule hands the whole stack to ``_RoundStacked`` instead of letting
    vmap trace the rounding op by op: one call rounds every client with its own
    blocks, and a client's NaN stays in its slice (that client is dropped later).
    """

    @staticmethod
    def forward(x, act: BlockFormat, err: BlockFormat, generator):  # type: ignore[override]
        return quantize(x, act, generator, check=False)

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        _, _, ctx.err, ctx.generator = inputs

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        return quantize(grad_out, ctx.err, ctx.generator, check=False), None, None, None

    @staticmethod
    def vmap(info, in_dims, x, act, err, generator):  # type: ignore[override]
        return _RoundStacked.apply(x.movedim(in_dims[0], 0), act, err, generator), 0


class _RoundStacked(torch.autograd.Function):
    """The rounding point on a stack of clients (dim 0), each with its own blocks.

    An ordinary autograd node: the vectorized engine differentiates the mapped forward
    with one plain backward pass, which calls this backward on the stacked errors.
    """

    @staticmethod
    def forward(ctx, x, act: BlockFormat, err: BlockFormat, generator):  # type: ignore[override]
        ctx.err, ctx.generator = err, generator
        return quantize(x, act, generator, batch_dims=1, check=False)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        err = quantize(grad_out, ctx.err, ctx.generator, batch_dims=1, check=False)
        return err, None, None, None


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
