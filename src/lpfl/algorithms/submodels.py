"""Clients that train only part of the global model (HeteroFL, SplitMix).

A client's part is a :class:`SubModel`: each of its tensors is the *leading* slice
(``[:n0, :n1, ...]``) of one global tensor. That one rule covers both methods:
HeteroFL's width-reduced models are the first channels of every layer (a
flattened ConvNet feature map is channel-major, so the classifier's first columns
belong to the first channels), and a SplitMix base is a whole global tensor.

The server averages each global element over the clients that hold it; an element
no client held this round keeps its global value.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from ..wire import WireError
from .base import ClientUpdate, State
from .fedavg import FedAvg

Shape = tuple[int, ...]


def leading(shape: Shape) -> tuple[slice, ...]:
    """The index of a tensor's leading ``shape`` corner."""
    return tuple(slice(0, n) for n in shape)


@dataclass(frozen=True)
class SubModel:
    """What one client trains: its architecture and where its tensors sit in the global model.

    ``arch`` names the client model's architecture (trainers keep one model per
    architecture); ``sources`` maps each client tensor name to its global name;
    ``shapes`` gives each client tensor's shape.
    """

    arch: Hashable
    sources: dict[str, str]
    shapes: dict[str, Shape]

    def extract(self, state: State) -> State:
        """The client's tensors, cut from a global state (copies, so training cannot alias it)."""
        return {n: state[g][leading(self.shapes[n])].clone() for n, g in self.sources.items()}


def state_shapes(make_model: Callable[[float], nn.Module], width: float) -> dict[str, Shape]:
    """Tensor shapes of the model at ``width``, leaving the global RNG untouched.

    Probing shapes must not shift the seeded initialisation of the real models.
    """
    with torch.random.fork_rng(devices=[]):
        return {k: tuple(v.shape) for k, v in make_model(width).state_dict().items()}


def slice_mean(
    model: State,
    updates: Sequence[ClientUpdate],
    plans: Sequence[SubModel],
    weights: Sequence[float],
) -> State:
    """Average every global element over the updates that hold it (float32).

    Weights are renormalised per element over its holders only, so a slice trained by
    one client of four takes that client's value, not a quarter of it.
    """
    total = {g: torch.zeros_like(v, dtype=torch.float32) for g, v in model.items()}
    mass = {g: torch.zeros_like(v, dtype=torch.float32) for g, v in model.items()}
    for update, plan, w in zip(updates, plans, weights, strict=True):
        for n, g in plan.sources.items():
            region = leading(plan.shapes[n])
            total[g][region] += w * update.state[n].float()
            mass[g][region] += w
    return {
        g: torch.where(mass[g] > 0, total[g] / mass[g].clamp(min=1e-30), model[g].float())
        for g in model
    }


@runtime_checkable
class SubModelAlgorithm(Protocol):
    """An algorithm whose clients train sub-models: the trainer and server ask it how."""

    name: str
    plans: dict[int, SubModel]  # this round's plans, by client

    def global_model(self) -> nn.Module:
        """A fresh global model (for initialisation and evaluation)."""
        ...

    def begin_round(self) -> None:
        """Forget the last round's plans, so a stale upload cannot be placed."""
        ...

    def plan(self, client: int) -> SubModel:
        """Decide what ``client`` trains this round; remembered until the next round begins."""
        ...

    def client_model(self, arch: Hashable) -> nn.Module:
        """A fresh client model of architecture ``arch``."""
        ...

    def expected_shapes(self, client: int) -> dict[str, Shape]:
        """The tensor shapes the server must find in ``client``'s upload this round."""
        ...

    def aggregate(self, updates: Sequence[ClientUpdate]) -> State:
        """Refused: a sub-model cannot be averaged without the global model around it."""
        raise TypeError(f"{self.name} averages slices into the global model: use aggregate_into")

    def aggregate_into(self, model: State, updates: Sequence[ClientUpdate]) -> State:
        """The new global model from the current one and this round's sub-model updates."""
        ...

    def state_dict(self) -> dict:
        """What a checkpoint needs to plan future rounds identically."""
        ...

    def load_state_dict(self, state: dict) -> None: ...


WIDTH_ASSIGNMENTS = ("cycle", "random")


def parse_widths(text: str) -> tuple[Fraction, ...]:
    """``"1/4,1/8"`` as fractions in (0, 1]; raises ValueError naming the bad item."""
    out = []
    for item in text.split(","):
        try:
            w = Fraction(item.strip())
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"{item.strip()!r} is not a fraction like 1/4") from None
        if not 0 < w <= 1:
            raise ValueError(f"width {item.strip()} must be in (0, 1]")
        out.append(w)
    return tuple(out)


def assign_widths(widths: Sequence[Fraction], clients: int, how: str, seed: int) -> list[Fraction]:
    """Each client's capability, fixed for the whole run.

    ``cycle``: client k gets ``widths[k % len(widths)]`` (equal shares, the HeteroFL
    paper's even split); ``random``: an independent uniform draw per client from a
    generator seeded by ``seed`` (shares vary).
    """
    if how == "cycle":
        return [widths[k % len(widths)] for k in range(clients)]
    if how == "random":
        picks = np.random.default_rng([seed, 8]).integers(len(widths), size=clients)
        return [widths[int(i)] for i in picks]
    raise ValueError(f"width assignment must be one of {WIDTH_ASSIGNMENTS}, got {how!r}")


class PlannedAveraging(FedAvg, ABC):
    """FedAvg's client objective with per-slice server averaging of planned sub-models.

    Subclasses say what each client trains (``_choose``) and which models exist;
    this class remembers the round's plans so the server can place every upload.
    """

    name = "planned"

    def __init__(self, weighting: str = "mean") -> None:
        super().__init__(weighting)
        self.plans: dict[int, SubModel] = {}

    @abstractmethod
    def _choose(self, client: int) -> SubModel:
        """What ``client`` trains this round."""

    @abstractmethod
    def global_model(self) -> nn.Module: ...

    @abstractmethod
    def client_model(self, arch: Hashable) -> nn.Module: ...

    def begin_round(self) -> None:
        self.plans.clear()

    def plan(self, client: int) -> SubModel:
        self.plans[client] = self._choose(client)
        return self.plans[client]

    def expected_shapes(self, client: int) -> dict[str, Shape]:
        if client not in self.plans:
            raise WireError(f"client {client} was not asked to train this round")
        return self.plans[client].shapes

    def aggregate(self, updates: Sequence[ClientUpdate]) -> State:
        """Refused: a sub-model cannot be averaged without the global model around it."""
        raise TypeError(f"{self.name} averages slices into the global model: use aggregate_into")

    def aggregate_into(self, model: State, updates: Sequence[ClientUpdate]) -> State:
        if not updates:
            raise ValueError("nothing to aggregate: no client updates")
        weights = [float(u.num_samples) if self.weighting == "weighted" else 1.0 for u in updates]
        return slice_mean(model, updates, [self.plans[u.client] for u in updates], weights)
