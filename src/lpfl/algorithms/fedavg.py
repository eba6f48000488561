"""FedAvg: clients minimise cross-entropy; the server averages their parameters.

The reference averages clients uniformly; ``weighting="samples"`` gives the
original FedAvg's sample-weighted mean.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .base import ClientUpdate, Inputs, State, cross_entropy, sample_mean, weighted_mean

WEIGHTINGS = ("mean", "weighted")


class FedAvg:
    name = "fedavg"

    def __init__(self, weighting: str = "mean") -> None:
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        self.weighting = weighting

    def client_loss(
        self, model: nn.Module, logits: Tensor, targets: Tensor, weight: Tensor | None = None
    ) -> Tensor:
        return sample_mean(cross_entropy(logits, targets), weight)

    def begin_local_training(self, start: State) -> None:
        pass

    def penalty(self, params: Mapping[str, Tensor]) -> Tensor | None:
        return None

    def graph_key(self) -> tuple:
        return ()

    def draw(self, targets: Tensor, label_counts: Tensor, generator: torch.Generator) -> Inputs:
        return {}

    def regularizer(
        self,
        head: Callable[[Tensor], Tensor],
        logits: Tensor,
        targets: Tensor,
        weight: Tensor | None,
        drawn: Inputs,
    ) -> Tensor | None:
        return None

    def client_inputs(self) -> State:
        return {}

    def load_client_inputs(self, inputs: State) -> None:
        if inputs:
            raise ValueError(f"{self.name} clients take nothing but the model, got {list(inputs)}")

    def check_update(self, update: ClientUpdate) -> str | None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def aggregate(self, updates: Sequence[ClientUpdate]) -> State:
        if self.weighting == "weighted":
            weights = [float(u.num_samples) for u in updates]
        else:
            weights = [1.0] * len(updates)
        return weighted_mean([u.state for u in updates], weights)
