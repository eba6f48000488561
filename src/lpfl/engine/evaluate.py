"""Test-set evaluation of the global model, which is a full-precision model (no rounding)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    normalize: Callable[[Tensor], Tensor],
    batch_size: int = 1000,
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) over the whole set."""
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=y.device)
    loss = torch.zeros((), device=y.device)
    for start in range(0, len(y), batch_size):
        logits = model(normalize(x[start : start + batch_size]))
        target = y[start : start + batch_size]
        loss += F.cross_entropy(logits, target, reduction="sum")
        correct += (logits.argmax(1) == target).sum()
    return float(correct) / len(y), float(loss) / len(y)
