"""SplitMix (Hong et al., 2022): the model is a set of narrow bases; clients train some.

The global model is ``1/base`` base networks, each the architecture at width
``base`` (e.g. eight 1/8-width ConvNets). A client with width budget ``b`` trains
``floor(b/base)`` bases per round, each as its own classifier; the server averages
each base over the clients that trained it; inference averages the logits of all
bases. Which bases a client trains is drawn each round (a seeded uniform start,
then consecutive bases modulo the count), so narrow clients cover every base over
time, as SplitMix's random base selection intends.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from fractions import Fraction

import numpy as np
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.ensemble import Ensemble
from .base import sample_mean
from .submodels import PlannedAveraging, SubModel, state_shapes


class SplitMix(PlannedAveraging):
    name = "splitmix"

    def __init__(
        self,
        make_model: Callable[[float], nn.Module],
        client_budgets: Sequence[Fraction],
        base: Fraction,
        seed: int,
        weighting: str = "mean",
    ) -> None:
        super().__init__(weighting)
        if base <= 0 or (1 / base).denominator != 1:
            raise ValueError(f"the base width must be 1/n for a whole n, got {base}")
        if min(client_budgets) < base:
            raise ValueError(f"a client budget of {min(client_budgets)} cannot hold a {base} base")
        self.make_model = make_model
        self.base = base
        self.count = int(1 / base)
        self.client_bases = [int(b // base) for b in client_budgets]
        self.base_shapes = state_shapes(make_model, float(base))
        self.rng = np.random.default_rng([seed, 9])

    def global_model(self) -> nn.Module:
        return self.client_model(self.count)

    def client_model(self, arch: Hashable) -> nn.Module:
        return Ensemble([self.make_model(float(self.base)) for _ in range(int(arch))])  # type: ignore[call-overload]

    def _choose(self, client: int) -> SubModel:
        n = self.client_bases[client]
        start = int(self.rng.integers(self.count))
        chosen = [(start + j) % self.count for j in range(n)]
        sources = {
            f"bases.{i}.{k}": f"bases.{b}.{k}"
            for i, b in enumerate(chosen)
            for k in self.base_shapes
        }
        shapes = {f"bases.{i}.{k}": s for i in range(n) for k, s in self.base_shapes.items()}
        return SubModel(n, sources, shapes)

    def client_loss(
        self, model: nn.Module, logits: Tensor, targets: Tensor, weight: Tensor | None = None
    ) -> Tensor:
        """Sum over bases of each base's cross-entropy (training logits are per base)."""
        if logits.dim() == 2:  # an ensemble prediction, e.g. at evaluation
            return super().client_loss(model, logits, targets, weight)
        per_base = F.cross_entropy(
            logits.transpose(1, 2), targets[:, None].expand(-1, logits.shape[1]), reduction="none"
        )
        return sample_mean(per_base.sum(dim=1), weight)

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
