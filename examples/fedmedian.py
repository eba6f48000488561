"""An algorithm plugin: FedAvg whose server takes the coordinate-wise median of the
client models instead of their mean, a classic defence against a few bad clients.

Clients still train in low precision and upload low-bit bytes; the server decodes them
and takes the median in float32. Use it without installing anything:

    PYTHONPATH=. lpfl run --dataset digits --algorithm examples.fedmedian:plugin

or register it under a short name from Python (``register("fedmedian", plugin)``), or
declare it as an entry point of your package (docs/plugins.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lpfl.algorithms import ClientUpdate, FedAvg, PluginContext, State


class FedMedian(FedAvg):
    name = "fedmedian"

    def aggregate(self, updates: Sequence[ClientUpdate]) -> State:
        states = [u.state for u in updates]
        # torch's median of an even count is the lower middle value: still a client's
        # own coordinate, so one extreme client cannot drag it.
        return {
            name: torch.stack([s[name].float() for s in states]).median(dim=0).values
            for name in states[0]
        }


def plugin(context: PluginContext) -> FedMedian:
    return FedMedian()
