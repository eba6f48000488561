"""FL algorithms: a client objective and a server aggregator each, one file per algorithm."""

from __future__ import annotations

from .base import Algorithm, ClientUpdate, State, weighted_mean
from .fedavg import FedAvg
from .fedprox import FedProx

ALGORITHMS = ("fedavg", "fedprox")


def build_algorithm(name: str, aggregation: str = "mean", prox_mu: float = 0.1) -> Algorithm:
    if name == "fedavg":
        return FedAvg(aggregation)
    if name == "fedprox":
        return FedProx(prox_mu, aggregation)
    raise ValueError(f"unknown algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}")


__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "ClientUpdate",
    "FedAvg",
    "FedProx",
    "State",
    "build_algorithm",
    "weighted_mean",
]
