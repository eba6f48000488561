"""The server's step on the global model, as an optimizer on the pseudo-gradient.

With ``delta = aggregate - w̄`` (the clients' mean move away from the model they
started from): ``sgd`` is ``w̄ ← w̄ + lr·delta``, which with ``lr = 1-λ`` is exactly the
paper's moving average ``λ·w̄ + (1-λ)·aggregate``; ``momentum`` is FedAvgM (Hsu et
al., 2019); ``adam`` is FedAdam (Reddi et al., 2021, no bias correction, τ = 1e-3).
All arithmetic is float32 on the server.
"""

from __future__ import annotations

from typing import Protocol

import torch

from .base import State

SERVER_OPTIMIZERS = ("sgd", "momentum", "adam")


class ServerOptimizer(Protocol):
    def step(self, model: State, aggregate: State) -> State: ...


class ServerSGD:
    def __init__(self, lr: float) -> None:
        self.lr = lr

    def step(self, model: State, aggregate: State) -> State:
        if self.lr == 1.0:
            return aggregate
        keep = 1.0 - self.lr  # the λ form: λ·w̄ + (1-λ)·aggregate
        return {k: keep * model[k] + self.lr * aggregate[k] for k in model}


class ServerMomentum:
    def __init__(self, lr: float, momentum: float = 0.9) -> None:
        self.lr, self.momentum = lr, momentum
        self.velocity: State = {}

    def step(self, model: State, aggregate: State) -> State:
        out = {}
        for k in model:
            delta = aggregate[k] - model[k]
            v = self.velocity.get(k)
            self.velocity[k] = delta if v is None else self.momentum * v + delta
            out[k] = model[k] + self.lr * self.velocity[k]
        return out


class ServerAdam:
    def __init__(
        self, lr: float, betas: tuple[float, float] = (0.9, 0.99), tau: float = 1e-3
    ) -> None:
        self.lr, (self.beta1, self.beta2), self.tau = lr, betas, tau
        self.m: State = {}
        self.v: State = {}

    def step(self, model: State, aggregate: State) -> State:
        out = {}
        for k in model:
            delta = aggregate[k] - model[k]
            m = self.m.get(k, torch.zeros_like(delta))
            v = self.v.get(k, torch.zeros_like(delta))
            self.m[k] = self.beta1 * m + (1 - self.beta1) * delta
            self.v[k] = self.beta2 * v + (1 - self.beta2) * delta * delta
            out[k] = model[k] + self.lr * self.m[k] / (self.v[k].sqrt() + self.tau)
        return out


def build_server_optimizer(name: str, lr: float, momentum: float = 0.9) -> ServerOptimizer:
    if name == "sgd":
        return ServerSGD(lr)
    if name == "momentum":
        return ServerMomentum(lr, momentum)
    if name == "adam":
        return ServerAdam(lr)
    raise ValueError(f"unknown server optimizer {name!r}; choose one of {SERVER_OPTIMIZERS}")
