"""The reference ConvNet: 3 x [conv3x3(128) -> GroupNorm(128,128) -> ReLU -> AvgPool2] -> Linear."""

from __future__ import annotations

from torch import Tensor, nn

from ..quant import ActQuant
from .input_conv import InputConv2d
from .norm_relu import GroupNormReLU
from .pool import AvgPool2x2


def _stage(in_ch: int, width: int, padding: int, first: bool) -> list[nn.Module]:
    # Rounding points where the reference puts them: after the conv, after norm+ReLU,
    # after the pool. GroupNorm with one group per channel is the reference's "instance norm";
    # it and the ReLU are one layer (fused on a GPU), and the Identity holds the ReLU's
    # place so that parameter names stay those of the reference's layout (features.N.*).
    conv = InputConv2d if first else nn.Conv2d
    return [
        conv(in_ch, width, kernel_size=3, padding=padding),
        ActQuant(),
        GroupNormReLU(width),
        nn.Identity(),
        ActQuant(),
        AvgPool2x2(),
        ActQuant(),
    ]


class ConvNet(nn.Module):
    def __init__(
        self, channels: int, size: int, num_classes: int, width: int = 128, depth: int = 3
    ) -> None:
        super().__init__()
        # 28x28 inputs are padded to 32x32 by the first conv (padding 3), as in the reference.
        first_pad = 3 if size == 28 else 1
        layers: list[nn.Module] = []
        in_ch, feat = channels, size + 2 * first_pad - 2
        for i in range(depth):
            layers += _stage(in_ch, width, first_pad if i == 0 else 1, first=i == 0)
            in_ch, feat = width, feat // 2
        if feat < 1:
            raise ValueError(f"{size}x{size} inputs are too small for a depth-{depth} ConvNet")
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width * feat * feat, num_classes)
        self.logits_quant = ActQuant()

    def forward(self, x: Tensor) -> Tensor:
        return self.logits_quant(self.classifier(self.features(x).flatten(1)))
