"""Adam and SGD for parameters stacked along a leading client dimension.

Each client's slice is stepped by torch's own functional optimizer (``torch.optim.adam.adam``
and ``torch.optim.sgd.sgd``), fused where the device has the kernel, so it follows exactly
the update the sequential engine's ``torch.optim.Adam``/``SGD`` makes, and one call
steps every slice of every parameter. Only the clients that took a batch this step are
passed in: the others keep their weights and optimizer state untouched, Adam's step
count included, without any masking arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import torch
from torch import Tensor
from torch.optim.adam import adam
from torch.optim.sgd import sgd

Stacked = dict[str, Tensor]


def fused_available(device: torch.device) -> bool:
    """Whether torch has fused (one kernel for all tensors) optimizer steps on this device."""
    return device.type in ("cpu", "cuda")


class ClientViews:
    """Each client's slice of some stacked tensors, made once for a round.

    Weights and optimizer state are rounded and stepped in place all round, so their
    slices stay valid and a step only picks the active clients' views instead of
    slicing every tensor again: for ten clients of the digits MLP, 180 views a step
    fewer.
    """

    def __init__(self, tensors: Iterable[Tensor]) -> None:
        self.per_tensor = [t.unbind(0) for t in tensors]

    def take(self, clients: Sequence[int]) -> list[Tensor]:
        """The given clients' slices, tensor by tensor, as the functional optimizers want."""
        return [views[j] for views in self.per_tensor for j in clients]


Step = Callable[[Stacked, Sequence[int]], None]


class StackedOptimizer(Protocol):
    def init_state(self, params: Stacked) -> Stacked: ...

    def bind(self, params: Stacked, state: Stacked) -> Step:
        """The step for one round: called with a step's gradients and the clients in
        ``active`` (indices along dim 0), it updates their slices in place."""


def _device(params: Stacked) -> torch.device:
    return next(iter(params.values())).device


def _grads(grads: Stacked, names: list[str]) -> Iterable[Tensor]:
    """Gradients in memory order. torch's fused CPU kernels read a tensor's memory in
    order and ignore its strides, so a transposed gradient (autograd returns batched
    matmul weight gradients that way) would be applied to the wrong elements."""
    return (grads[n].contiguous() for n in names)


class StackedAdam:
    def __init__(self, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas, eps

    def init_state(self, params: Stacked) -> Stacked:
        state = {}
        for name, p in params.items():
            # One step count per parameter and client, float32, as torch.optim.Adam keeps it.
            state[f"step.{name}"] = torch.zeros(p.shape[0], device=p.device)
            state[f"exp_avg.{name}"] = torch.zeros_like(p)
            state[f"exp_avg_sq.{name}"] = torch.zeros_like(p)
        return state

    def bind(self, params: Stacked, state: Stacked) -> Step:
        names = list(params)
        weights = ClientViews(params.values())
        exp_avg = ClientViews(state[f"exp_avg.{n}"] for n in names)
        exp_avg_sq = ClientViews(state[f"exp_avg_sq.{n}"] for n in names)
        counts = [state[f"step.{n}"] for n in names]
        steps = ClientViews(counts)
        fused = fused_available(_device(params))
        clients = len(counts[0])
        options = dict(amsgrad=False, lr=self.lr, beta1=self.beta1, beta2=self.beta2,
                       weight_decay=0.0, eps=self.eps, maximize=False)  # fmt: skip

        def step(grads: Stacked, active: Sequence[int]) -> None:
            counted = steps.take(active)
            slices = (
                weights.take(active),
                ClientViews(_grads(grads, names)).take(active),
                exp_avg.take(active),
                exp_avg_sq.take(active),
                [],
                counted,
            )
            if not fused:
                adam(*slices, fused=False, **options)
                return
            # torch's ``adam`` adds 1 to each slice's step count, a 0-dim tensor apiece
            # (60 adds a step for the digits MLP's ten clients, 4.8 % of a 32-bit round on
            # the CPU). When every client is active the stacked counts take it in one op
            # per parameter instead (no index to send to a GPU when some are not), and
            # the same fused kernel as ``adam(fused=True)`` then reads them.
            torch._foreach_add_(counts if len(active) == clients else counted, 1)
            torch._fused_adam_(*slices, grad_scale=None, found_inf=None, **options)

        return step


class StackedSGD:
    def __init__(self, lr: float, momentum: float = 0.0):
        self.lr, self.momentum = lr, momentum

    def init_state(self, params: Stacked) -> Stacked:
        if not self.momentum:
            return {}
        # A zero buffer's first update, 0 * momentum + g, is exactly torch's first buffer g.
        return {f"momentum.{name}": torch.zeros_like(p) for name, p in params.items()}

    def bind(self, params: Stacked, state: Stacked) -> Step:
        names = list(params)
        weights = ClientViews(params.values())
        momentum = ClientViews(state[f"momentum.{n}"] for n in names) if self.momentum else None
        fused = fused_available(_device(params))

        def step(grads: Stacked, active: Sequence[int]) -> None:
            p = weights.take(active)
            sgd(
                p,
                ClientViews(_grads(grads, names)).take(active),
                momentum.take(active) if momentum else [None] * len(p),  # type: ignore[arg-type]
                fused=fused, weight_decay=0.0, momentum=self.momentum, lr=self.lr,
                dampening=0.0, nesterov=False, maximize=False,
            )  # fmt: skip

        return step


def build_stacked_optimizer(name: str, lr: float, momentum: float = 0.0) -> StackedOptimizer:
    if name == "adam":
        return StackedAdam(lr)
    if name == "sgd":
        return StackedSGD(lr, momentum)
    raise ValueError(f"unknown optimizer {name!r}")
