"""Model zoo: every model marks its activation rounding points with ``ActQuant``."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .convnet import ConvNet
from .mlp import MLP
from .resnet import ResNet, resnet8, resnet18

_BUILDERS: dict[str, Callable[[int, int, int], nn.Module]] = {
    "convnet": lambda c, s, k: ConvNet(c, s, k),
    "mlp": lambda c, s, k: MLP(c * s * s, k),
    "resnet8": lambda c, s, k: resnet8(c, k),
    "resnet18": lambda c, s, k: resnet18(c, k),
}
MODELS = tuple(_BUILDERS)


def build_model(name: str, channels: int, size: int, num_classes: int) -> nn.Module:
    """Build a model for ``channels`` x ``size`` x ``size`` inputs and ``num_classes`` outputs."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return _BUILDERS[name](channels, size, num_classes)


__all__ = ["MLP", "MODELS", "ConvNet", "ResNet", "build_model", "resnet8", "resnet18"]
