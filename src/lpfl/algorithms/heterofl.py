"""HeteroFL (Diao et al., 2021): clients train nested width-reduced slices of one model.

A client of width ``w`` trains the model built at width ``w``, whose every tensor is
the leading slice of the global tensor (the first ``w`` of each layer's channels).
The server averages each element over the clients that hold it.

The global model is as wide as the widest client: with widths 1/4 and 1/8 the global
model is the 1/4-width network, since no client could train anything wider (and
HeteroFL evaluates at the widths it trains). Normalisation: the reference ConvNet's
GroupNorm has one group per channel, so a slice normalises exactly the channels it
keeps, with no running statistics and no need for HeteroFL's static batch norm.
HeteroFL's "scaler" (dividing by the width in training) is not used: the per-channel
norm after each convolution already makes the activations width-independent.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from fractions import Fraction

from torch import nn

from .submodels import PlannedAveraging, Shape, SubModel, state_shapes


class HeteroFL(PlannedAveraging):
    name = "heterofl"

    def __init__(
        self,
        make_model: Callable[[float], nn.Module],
        client_widths: Sequence[Fraction],
        weighting: str = "mean",
    ) -> None:
        """``make_model(w)`` builds the architecture at width ``w``; one width per client."""
        super().__init__(weighting)
        self.make_model = make_model
        self.client_widths = list(client_widths)
        self.width = max(self.client_widths)
        full = state_shapes(make_model, float(self.width))
        self.shapes: dict[Fraction, dict[str, Shape]] = {}
        for w in sorted(set(self.client_widths)):
            shapes = state_shapes(make_model, float(w))
            if shapes.keys() != full.keys() or any(
                len(s) != len(full[k]) or any(a > b for a, b in zip(s, full[k], strict=True))
                for k, s in shapes.items()
            ):
                raise ValueError(
                    f"the width-{w} model is not a slice of the width-{self.width} one"
                )
            self.shapes[w] = shapes

    def global_model(self) -> nn.Module:
        return self.make_model(float(self.width))

    def client_model(self, arch: Hashable) -> nn.Module:
        return self.make_model(float(arch))  # type: ignore[arg-type]

    def _choose(self, client: int) -> SubModel:
        w = self.client_widths[client]
        shapes = self.shapes[w]
        return SubModel(w, {k: k for k in shapes}, shapes)
