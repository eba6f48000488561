"""SplitMix's model: narrow base networks side by side, ensembled at inference."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Ensemble(nn.Module):
    """Bases that each classify on their own.

    In training the output is every base's logits, ``(batch, bases, classes)``: each
    base is trained as its own classifier, as SplitMix does (its parameters are
    disjoint from the others', so one summed loss trains them independently). In
    eval mode the output is the mean of the bases' logits: the ensemble prediction.
    """

    def __init__(self, bases: list[nn.Module]) -> None:
        super().__init__()
        if not bases:
            raise ValueError("an ensemble needs at least one base")
        self.bases = nn.ModuleList(bases)

    def forward(self, x: Tensor) -> Tensor:
        logits = torch.stack([base(x) for base in self.bases], dim=1)
        return logits if self.training else logits.mean(dim=1)
