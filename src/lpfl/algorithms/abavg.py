"""ABAvg: the server weights each client model by its accuracy on server-held data.

The reference scores clients on the *test* set, which leaks it into training. Here
the score comes from a validation split the server carves from the training data
(``--server-val-fraction``); the test set is only ever used to report accuracy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .base import ClientUpdate, State, weighted_mean
from .fedavg import FedAvg


class ABAvg(FedAvg):
    name = "abavg"

    def __init__(self, score: Callable[[State], float]) -> None:
        super().__init__()
        self.score = score  # accuracy of a client model on the server's validation split
        self.last_weights: list[float] = []

    def aggregate(self, updates: Sequence[ClientUpdate]) -> State:
        accuracies = [self.score(u.state) for u in updates]
        total = sum(accuracies)
        # All-zero accuracy (possible early on) carries no preference: fall back to the mean.
        self.last_weights = [a / total if total > 0 else 1 / len(updates) for a in accuracies]
        return weighted_mean([u.state for u in updates], self.last_weights)
