"""Algorithms from outside lpfl: a researcher's own, used by name like the built-in ones.

A plugin is a factory that returns an ``Algorithm`` (subclassing ``FedAvg`` gives every
hook a default). It is found by name, in this order: ``register(name, factory)`` from
Python; a name ``module:attribute`` imports that attribute (the quick way, with no
package: ``PYTHONPATH=. lpfl run --algorithm examples.fedmedian:plugin``); else the
``lpfl.algorithms`` entry-point group of the installed packages. So ``lpfl run``,
sweeps and Flower nodes (where the code is installed) use it without a change to lpfl:

    # pyproject.toml of the plugin's package
    [project.entry-points."lpfl.algorithms"]
    fedmedian = "mypkg.fedmedian:plugin"      # an AlgorithmPlugin, or a bare factory

Everything else of a run stays lpfl's: the clients' rounding, the wire, the server's
moving average and the records. A plugin's hyper-parameters live in its factory (a
run's config does not know them), so give each setting its own name.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

import torch

from .base import Algorithm, State

ENTRY_POINT_GROUP = "lpfl.algorithms"
HOOKS = sorted(name for name in vars(Algorithm) if not name.startswith("_"))
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PluginContext:
    """What a factory is given to build its algorithm for one run."""

    aggregation: str  # --aggregation: "mean" (by samples) or "uniform"
    seed: int
    device: torch.device  # where the run trains: for server-side models
    # The accuracy of a client state on the server's validation split (carved from the
    # training data, never the test set); None unless the plugin asks for that split.
    score: Callable[[State], float] | None = None


@dataclass(frozen=True)
class AlgorithmPlugin:
    factory: Callable[[PluginContext], Algorithm]
    # Carve a validation split off the training data for ``PluginContext.score``
    # (--server-val-fraction), as ABAvg does.
    needs_server_data: bool = False

    def build(self, context: PluginContext) -> Algorithm:
        """The factory's algorithm, refused before the first round if a hook is missing
        (it would otherwise fail mid-run, in whichever round first calls that hook)."""
        algorithm = self.factory(context)
        missing = [hook for hook in HOOKS if not callable(getattr(algorithm, hook, None))]
        if missing or not isinstance(getattr(algorithm, "name", None), str):
            raise TypeError(
                f"{type(algorithm).__name__} is not an lpfl algorithm: it lacks "
                f"{', '.join(missing) or 'a name'} (subclass lpfl.algorithms.FedAvg)"
            )
        return algorithm


_registered: dict[str, AlgorithmPlugin] = {}


def register(
    name: str,
    factory: Callable[[PluginContext], Algorithm],
    needs_server_data: bool = False,
) -> None:
    """Make ``name`` an algorithm for this process (a later call replaces it)."""
    from . import ALGORITHMS  # the package imports this module

    if name in ALGORITHMS:
        raise ValueError(f"{name!r} is a built-in algorithm; choose another name")
    _registered[name] = AlgorithmPlugin(factory, needs_server_data)


def find(name: str) -> AlgorithmPlugin | None:
    """The plugin called ``name``, registered or installed, or None."""
    if name in _registered:
        return _registered[name]
    if ":" in name:
        module, _, attribute = name.partition(":")
        return _keep(name, getattr(importlib.import_module(module), attribute))
    for point in entry_points(group=ENTRY_POINT_GROUP, name=name):
        log.info("algorithm %r from %s", name, point.value)
        return _keep(name, point.load())
    return None


def _keep(name: str, loaded: object) -> AlgorithmPlugin:
    if isinstance(loaded, AlgorithmPlugin):
        plugin = loaded
    elif callable(loaded):
        plugin = AlgorithmPlugin(loaded)
    else:
        raise TypeError(f"{name} is a {type(loaded).__name__}, not a factory or AlgorithmPlugin")
    _registered[name] = plugin
    return plugin


def names() -> list[str]:
    """Every plugin name known here: registered, then installed (not loaded)."""
    installed = [p.name for p in entry_points(group=ENTRY_POINT_GROUP)]
    return sorted(set(_registered) | set(installed))
