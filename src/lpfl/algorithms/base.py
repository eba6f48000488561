"""What a client sends back, and the two hooks every FL algorithm fills in.

An algorithm is a client-side objective plus a server-side aggregator, in the
spirit of Flower's strategies: small, with the round loop kept elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

State = dict[str, Tensor]


@dataclass(frozen=True)
class ClientUpdate:
    client: int
    state: State  # the client's low-precision model after local training
    num_samples: int
    train_loss: float  # mean loss over the client's local samples (nan when it has none)


class Algorithm(Protocol):
    name: str

    def client_loss(
        self, model: nn.Module, logits: Tensor, targets: Tensor, weight: Tensor | None = None
    ) -> Tensor:
        """The loss a client minimises on one batch.

        ``weight`` (0/1 per sample) marks the real samples of a padded batch: the
        vectorized engine pads clients that run out of data, and padding must not count.
        """
        ...

    def begin_local_training(self, start: State) -> None:
        """Told the model a client starts from (FedProx anchors its penalty there)."""
        ...

    def penalty(self, params: Mapping[str, Tensor]) -> Tensor | None:
        """A term added to the client loss that depends on the weights alone, or None."""
        ...

    def aggregate(self, updates: Sequence[ClientUpdate]) -> State:
        """Combine client models into one high-precision (float32) model."""
        ...


def sample_mean(per_sample: Tensor, weight: Tensor | None) -> Tensor:
    """Mean over the real samples of a batch (all of them when ``weight`` is None)."""
    if weight is None:
        return per_sample.mean()
    return (per_sample * weight).sum() / weight.sum().clamp(min=1.0)


def weighted_mean(states: Sequence[State], weights: Sequence[float]) -> State:
    """Average states in float32 with normalised weights: the server's high-precision step."""
    if not states:
        raise ValueError("nothing to aggregate: no client updates")
    w = torch.tensor(weights, dtype=torch.float64)
    if not bool(torch.isfinite(w).all()) or float(w.sum()) <= 0:
        raise ValueError(f"aggregation weights must be finite with a positive sum, got {weights}")
    w = (w / w.sum()).tolist()
    return {
        name: sum(wk * s[name].float() for wk, s in zip(w, states, strict=True))  # type: ignore[misc]
        for name in states[0]
    }
