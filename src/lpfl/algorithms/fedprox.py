"""FedProx: FedAvg whose clients are pulled toward the model they started from.

Local loss + μ·‖w - w_global‖². As in the paper's runs (and the reference code) there
is no ½ in front, so the proximal gradient is 2μ(w - w_global); μ = 0.1 by default.
The anchor is the model the client received (``Q(w̄)`` with download quantization).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from .base import State
from .fedavg import FedAvg


class FedProx(FedAvg):
    name = "fedprox"

    def __init__(self, mu: float = 0.1, weighting: str = "mean") -> None:
        super().__init__(weighting)
        if mu < 0:
            raise ValueError(f"prox mu must be >= 0, got {mu}")
        self.mu = mu
        self.anchor: State = {}

    def begin_local_training(self, start: State) -> None:
        # Copied into the same tensors every round: a captured client step reads them there.
        if self.anchor.keys() == start.keys():
            for k, v in start.items():
                self.anchor[k].copy_(v)
        else:
            self.anchor = {k: v.detach().float().clone() for k, v in start.items()}

    def penalty(self, params: Mapping[str, Tensor]) -> Tensor | None:
        if not self.anchor:
            raise RuntimeError("FedProx.penalty called before begin_local_training")
        return self.mu * sum(((p - self.anchor[n]) ** 2).sum() for n, p in params.items())
