"""FL algorithms: a client objective and a server aggregator each, one file per algorithm."""

from __future__ import annotations

from .base import Algorithm, ClientUpdate, State, weighted_mean
from .fedavg import FedAvg

ALGORITHMS = ("fedavg",)


def build_algorithm(name: str, aggregation: str = "mean") -> Algorithm:
    if name == "fedavg":
        return FedAvg(aggregation)
    raise ValueError(f"unknown algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}")


__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "ClientUpdate",
    "FedAvg",
    "State",
    "build_algorithm",
    "weighted_mean",
]
