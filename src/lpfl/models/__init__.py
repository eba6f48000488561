"""Model zoo: every model marks its activation rounding points with ``ActQuant``."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .convnet import ConvNet
from .mlp import MLP
from .resnet import ResNet, resnet8, resnet18
from .width import scaled

_BUILDERS: dict[str, Callable[[int, int, int, float], nn.Module]] = {
    "convnet": lambda c, s, k, w: ConvNet(c, s, k, width=scaled(128, w)),
    "mlp": lambda c, s, k, w: MLP(c * s * s, k, hidden=(scaled(200, w), scaled(200, w))),
    "resnet8": lambda c, s, k, w: resnet8(c, k, w),
    "resnet18": lambda c, s, k, w: resnet18(c, k, w),
}
MODELS = tuple(_BUILDERS)


def build_model(
    name: str, channels: int, size: int, num_classes: int, width: float = 1.0
) -> nn.Module:
    """Build a model for ``channels`` x ``size`` x ``size`` inputs and ``num_classes`` outputs.

    ``width`` scales every hidden layer's channel count (HeteroFL's sub-models and
    SplitMix's bases are narrow copies of the same architecture).
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    if not 0 < width <= 1:
        raise ValueError(f"model width must be in (0, 1], got {width}")
    return _BUILDERS[name](channels, size, num_classes, width)


__all__ = ["MLP", "MODELS", "ConvNet", "ResNet", "build_model", "resnet8", "resnet18", "scaled"]
