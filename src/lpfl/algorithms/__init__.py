"""FL algorithms: a client objective and a server aggregator each, one file per algorithm."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction

from torch import nn

from .abavg import ABAvg
from .base import Algorithm, ClientUpdate, State, weighted_mean
from .fedavg import FedAvg
from .fedprox import FedProx
from .heterofl import HeteroFL
from .splitmix import SplitMix
from .submodels import SubModelAlgorithm

ALGORITHMS = ("fedavg", "fedprox", "abavg", "heterofl", "splitmix")
NEEDS_SERVER_DATA = ("abavg",)  # algorithms that score clients on a server-held split
SUBMODEL_ALGORITHMS = ("heterofl", "splitmix")  # clients train parts of the global model


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
    if name in SUBMODEL_ALGORITHMS:
        raise ValueError(f"{name} trains sub-models: build it with build_submodel_algorithm")
    raise ValueError(f"unknown algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}")


def build_submodel_algorithm(
    name: str,
    make_model: Callable[[float], nn.Module],
    client_widths: Sequence[Fraction],
    base: Fraction,
    seed: int,
    aggregation: str = "mean",
) -> SubModelAlgorithm:
    """HeteroFL or SplitMix; ``make_model(w)`` builds the architecture at width ``w``.

    ``client_widths`` holds each client's width budget; ``base`` is SplitMix's base width.
    """
    if name == "heterofl":
        return HeteroFL(make_model, client_widths, aggregation)
    if name == "splitmix":
        return SplitMix(make_model, client_widths, base, seed, aggregation)
    raise ValueError(f"{name!r} is not one of {', '.join(SUBMODEL_ALGORITHMS)}")


__all__ = [
    "ALGORITHMS",
    "NEEDS_SERVER_DATA",
    "SUBMODEL_ALGORITHMS",
    "ABAvg",
    "Algorithm",
    "ClientUpdate",
    "FedAvg",
    "FedProx",
    "HeteroFL",
    "SplitMix",
    "State",
    "SubModelAlgorithm",
    "build_algorithm",
    "build_submodel_algorithm",
    "weighted_mean",
]
