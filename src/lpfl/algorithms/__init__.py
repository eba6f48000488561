"""FL algorithms: a client objective and a server aggregator each, one file per algorithm."""

from __future__ import annotations

from collections.abc import Callable

from .abavg import ABAvg
from .base import Algorithm, ClientUpdate, State, weighted_mean
from .fedavg import FedAvg
from .fedprox import FedProx

ALGORITHMS = ("fedavg", "fedprox", "abavg")
NEEDS_SERVER_DATA = ("abavg",)  # algorithms that score clients on a server-held split


def build_algorithm(
    name: str,
    aggregation: str = "mean",
    prox_mu: float = 0.1,
    score: Callable[[State], float] | None = None,
) -> Algorithm:
    """``score`` rates a model on the server's validation split (needed by ABAvg)."""
    if name == "fedavg":
        return FedAvg(aggregation)
    if name == "fedprox":
        return FedProx(prox_mu, aggregation)
    if name == "abavg":
        if score is None:
            raise ValueError("abavg needs a server-side validation score")
        return ABAvg(score)
    raise ValueError(f"unknown algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}")


__all__ = [
    "ALGORITHMS",
    "NEEDS_SERVER_DATA",
    "ABAvg",
    "Algorithm",
    "ClientUpdate",
    "FedAvg",
    "FedProx",
    "State",
    "build_algorithm",
    "weighted_mean",
]
