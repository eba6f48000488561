"""FL algorithms: a client objective and a server aggregator each, one file per algorithm."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from torch import nn

from ..models import feature_dim, num_classes
from ..quant import BlockFormat
from . import plugins
from .abavg import ABAvg
from .base import Algorithm, ClientUpdate, Inputs, State, weighted_mean
from .fedavg import FedAvg
from .fedftg import FedFTG, FedFTGOptions
from .fedgen import FedGen, FedGenOptions
from .fedprox import FedProx
from .heterofl import HeteroFL
from .plugins import AlgorithmPlugin, PluginContext, register
from .splitmix import SplitMix
from .submodels import SubModelAlgorithm

ALGORITHMS = ("fedavg", "fedprox", "abavg", "fedgen", "fedftg", "heterofl", "splitmix")
NEEDS_SERVER_DATA = ("abavg",)  # algorithms that score clients on a server-held split
# The data-free methods: they need the task's model on the server and each client's
# per-class counts, and FedGen's clients the server's generator.
GENERATIVE = ("fedgen", "fedftg")


@dataclass(frozen=True)
class Generative:
    """What the data-free methods (FedGen, FedFTG) need besides the common settings."""

    model: nn.Module  # a full-precision model of the task, for the server's own use
    channels: int
    size: int
    act: BlockFormat  # the clients' activation format: FedGen's features are rounded in it
    seed: int = 0
    fedgen: FedGenOptions = field(default_factory=FedGenOptions)
    fedftg: FedFTGOptions = field(default_factory=FedFTGOptions)


SUBMODEL_ALGORITHMS = ("heterofl", "splitmix")  # clients train parts of the global model


def needs_server_data(name: str) -> bool:
    """Whether the server keeps a validation split of the training data for ``name``."""
    if name in ALGORITHMS:
        return name in NEEDS_SERVER_DATA
    plugin = plugins.find(name)
    return plugin is not None and plugin.needs_server_data


def build_algorithm(
    name: str,
    aggregation: str = "mean",
    prox_mu: float = 0.1,
    score: Callable[[State], float] | None = None,
    generative: Generative | None = None,
) -> Algorithm:
    """``score`` rates a model on the server's validation split (needed by ABAvg);
    ``generative`` sets up FedGen and FedFTG."""
    if name in GENERATIVE:
        if generative is None:
            raise ValueError(f"{name} needs the task's model and formats (generative=...)")
        return _build_generative(name, aggregation, generative)
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


def _build_generative(name: str, aggregation: str, g: Generative) -> Algorithm:
    classes = num_classes(g.model)
    if name == "fedgen":
        device = next(g.model.parameters()).device
        dim = feature_dim(g.model)
        return FedGen(dim, classes, g.act, g.fedgen, aggregation, device, g.seed)
    return FedFTG(g.model, g.channels, g.size, classes, g.fedftg, aggregation, g.seed)


__all__ = [
    "ALGORITHMS",
    "GENERATIVE",
    "NEEDS_SERVER_DATA",
    "SUBMODEL_ALGORITHMS",
    "ABAvg",
    "Algorithm",
    "AlgorithmPlugin",
    "ClientUpdate",
    "FedAvg",
    "FedFTG",
    "FedFTGOptions",
    "FedGen",
    "FedGenOptions",
    "FedProx",
    "Generative",
    "HeteroFL",
    "Inputs",
    "PluginContext",
    "SplitMix",
    "State",
    "SubModelAlgorithm",
    "build_algorithm",
    "build_submodel_algorithm",
    "needs_server_data",
    "plugins",
    "register",
    "weighted_mean",
]
