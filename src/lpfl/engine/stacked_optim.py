"""Adam and SGD for parameters stacked along a leading client dimension.

Each client's slice follows exactly the update of ``torch.optim.Adam``/``SGD``, but a
client marked inactive (it has no batch left this step) keeps its weights and its
optimizer state untouched, Adam's step count included.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

Stacked = dict[str, Tensor]


def per_client(mask: Tensor, like: Tensor) -> Tensor:
    return mask.view(-1, *([1] * (like.ndim - 1)))


class StackedOptimizer(Protocol):
    def init_state(self, params: Stacked) -> Stacked: ...

    def step(self, params: Stacked, grads: Stacked, state: Stacked, active: Tensor) -> None: ...


class StackedAdam:
    def __init__(self, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas, eps

    def init_state(self, params: Stacked) -> Stacked:
        k = next(iter(params.values())).shape[0]
        device = next(iter(params.values())).device
        # float64 step and bias factors, as torch.optim.Adam computes them in Python floats
        state = {"step": torch.zeros(k, dtype=torch.float64, device=device)}
        for name, p in params.items():
            state[f"exp_avg.{name}"] = torch.zeros_like(p)
            state[f"exp_avg_sq.{name}"] = torch.zeros_like(p)
        return state

    @torch.no_grad()
    def step(self, params: Stacked, grads: Stacked, state: Stacked, active: Tensor) -> None:
        state["step"] += active.to(state["step"].dtype)
        step = state["step"]
        # Inactive clients may have step 0 here; their (inf) factors are never selected.
        step_size = (self.lr / (1 - self.beta1**step)).float()
        bias2_sqrt = (1 - self.beta2**step).sqrt().float()
        for name, p in params.items():
            g, m, v = grads[name], state[f"exp_avg.{name}"], state[f"exp_avg_sq.{name}"]
            on = per_client(active, p)
            m.copy_(torch.where(on, torch.lerp(m, g, 1 - self.beta1), m))
            v.copy_(torch.where(on, v * self.beta2 + g * g * (1 - self.beta2), v))
            denom = v.sqrt() / per_client(bias2_sqrt, p) + self.eps
            update = m / denom * per_client(step_size, p)
            p.copy_(torch.where(on, p - update, p))


class StackedSGD:
    def __init__(self, lr: float, momentum: float = 0.0):
        self.lr, self.momentum = lr, momentum

    def init_state(self, params: Stacked) -> Stacked:
        if not self.momentum:
            return {}
        return {f"momentum.{name}": torch.zeros_like(p) for name, p in params.items()}

    @torch.no_grad()
    def step(self, params: Stacked, grads: Stacked, state: Stacked, active: Tensor) -> None:
        for name, p in params.items():
            g, on = grads[name], per_client(active, p)
            if self.momentum:
                buf = state[f"momentum.{name}"]
                buf.copy_(torch.where(on, buf * self.momentum + g, buf))
                g = buf
            p.copy_(torch.where(on, p - self.lr * g, p))


def build_stacked_optimizer(name: str, lr: float, momentum: float = 0.0) -> StackedOptimizer:
    if name == "adam":
        return StackedAdam(lr)
    if name == "sgd":
        return StackedSGD(lr, momentum)
    raise ValueError(f"unknown optimizer {name!r}")
