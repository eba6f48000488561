"""The server: aggregates client models in float32 and keeps the moving average.

``w̄ ← λ·w̄ + (1-λ)·aggregate``. Since clients start from w̄, this is FedAvg with a
server learning rate of 1-λ; it smooths out the drift of low-precision local models.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..algorithms import Algorithm, ClientUpdate, State
from ..quant import BlockFormat, quantize
from .client import DivergenceError


class Server:
    def __init__(
        self,
        initial: State,
        algorithm: Algorithm,
        moving_average: float = 0.9,
        ma_start: int = 1,
        download: BlockFormat | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        self.model: State = {k: v.detach().float().clone() for k, v in initial.items()}
        self.algorithm = algorithm
        self.moving_average = moving_average
        self.ma_start = ma_start
        self.download = download
        self.generator = generator

    def broadcast(self) -> State:
        """What clients start from: Q(w̄) when download quantization is on, else w̄ itself."""
        if self.download is None or self.download.full_precision:
            return self.model
        return {k: quantize(v, self.download, self.generator) for k, v in self.model.items()}

    def update(self, round_: int, updates: Sequence[ClientUpdate]) -> None:
        """Fold one round's client models into the global model (rounds count from 1)."""
        aggregate = self.algorithm.aggregate(updates)
        bad = [k for k, v in aggregate.items() if not bool(torch.isfinite(v).all())]
        if bad:
            raise DivergenceError(f"round {round_}: aggregated model holds NaN/Inf in {bad[:3]}")
        lam = self.moving_average
        if lam > 0 and round_ > self.ma_start:
            self.model = {k: lam * self.model[k] + (1 - lam) * aggregate[k] for k in self.model}
        else:
            self.model = aggregate
