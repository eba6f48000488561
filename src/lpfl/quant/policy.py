"""Which format each role of low-precision training uses, and the in-place steps that apply it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from .autograd import attach_precision, quantize
from .formats import BlockFormat


@dataclass(frozen=True)
class PrecisionPolicy:
    """Formats for weights, gradients, activations (forward) and errors (backward).

    The reference rounds weights and gradients per (dim0, dim1) block and activations
    and errors per whole tensor; those are the defaults of ``uniform``.
    """

    weight: BlockFormat
    grad: BlockFormat
    act: BlockFormat
    err: BlockFormat

    @classmethod
    def uniform(
        cls,
        bits: int,
        rounding: str = "stochastic",
        weight_block: str = "BC",
        act_block: str = "tensor",
        grad_block: str | None = None,
        err_block: str | None = None,
    ) -> PrecisionPolicy:
        """One word length for all roles; grads share the weight block, errors the act one."""
        return cls(
            weight=BlockFormat(bits, weight_block, rounding),
            grad=BlockFormat(bits, grad_block or weight_block, rounding),
            act=BlockFormat(bits, act_block, rounding),
            err=BlockFormat(bits, err_block or act_block, rounding),
        )

    @property
    def full_precision(self) -> bool:
        return all(f.full_precision for f in (self.weight, self.grad, self.act, self.err))

    def attach(self, model: nn.Module, generator: torch.Generator | None = None) -> None:
        """Turn on activation/error rounding in ``model`` (a no-op for full precision)."""
        found = attach_precision(model, self.act, self.err, generator)
        if found == 0 and not (self.act.full_precision and self.err.full_precision):
            raise ValueError(
                f"{type(model).__name__} has no ActQuant points to round activations at"
            )

    def quantize_grads_(
        self, params: Iterable[nn.Parameter], generator: torch.Generator | None = None
    ) -> None:
        """Round every gradient before the optimizer sees it.

        As with activations, a NaN/Inf is not looked for here (it comes out as NaN
        and reaches the weights): the trainer checks once, at the end.
        """
        _round_in_place((p.grad for p in params if p.grad is not None), self.grad, generator)

    def quantize_weights_(
        self, params: Iterable[torch.Tensor], generator: torch.Generator | None = None
    ) -> None:
        """Round every weight after an optimizer step, so the model stays on the low-bit grid."""
        _round_in_place(params, self.weight, generator)


@torch.no_grad()
def _round_in_place(
    tensors: Iterable[torch.Tensor], fmt: BlockFormat, generator: torch.Generator | None
) -> None:
    if fmt.full_precision:
        return
    for t in tensors:
        t.copy_(quantize(t, fmt, generator, check=False))
