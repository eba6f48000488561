"""Client drift, measured every round: how much the clients' updates disagree.

The paper argues that low-precision local training curbs client drift under non-IID
data: rounding keeps each client from over-fitting its own labels, so the clients'
models stay closer together. Accuracy shows that only indirectly; this measures it.
With Δ_k = w_k − s the update of client k from the model s all clients started from,
and Δ̄ their (unweighted) mean,

    drift = mean_k ‖Δ_k − Δ̄‖² / mean_k ‖Δ_k‖²

the share of the updates' energy that is disagreement between clients: 0 when every
client moved the same way, near 1 when their updates mostly cancel. It is a ratio, so
it does not grow with the learning rate or the model's size, and the start ``s`` is
the broadcast the clients received (``Q(w̄)``, not ``w̄``): measured from ``w̄``, the
download's own rounding would count as movement, more of it at fewer bits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor


def client_drift(
    start: Mapping[str, Tensor], states: Sequence[Mapping[str, Tensor]]
) -> float | None:
    """The drift of one round's client models; None with fewer than two, or none moved.

    Only floating-point entries count (a BatchNorm's batch counter is not a weight).
    Computed as ``(Σ_k ‖Δ_k‖² − ‖Σ_k Δ_k‖² / K) / Σ_k ‖Δ_k‖²`` with torch's multi-tensor
    ops, one pass over each client: 13 ms for 32 CIFAR-10 ConvNets on this 2-core CPU
    against 64 ms for the stacked form above, the same value to 1e-6 (float32 norms;
    the subtraction loses precision only for a drift far below 1e-3).
    """
    if len(states) < 2:
        return None
    names = [name for name, value in start.items() if value.is_floating_point()]
    origin = [start[name].float() for name in names]
    total = [torch.zeros_like(o) for o in origin]
    energy = 0.0
    for state in states:
        updates = torch._foreach_sub([state[name].float() for name in names], origin)
        energy += sum(float(n) ** 2 for n in torch._foreach_norm(updates))
        torch._foreach_add_(total, updates)
    if energy <= 0:
        return None
    agreement = sum(float(n) ** 2 for n in torch._foreach_norm(total)) / len(states)
    return max(energy - agreement, 0.0) / energy
