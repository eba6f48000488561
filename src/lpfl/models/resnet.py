"""CIFAR-style ResNets with GroupNorm: no running statistics, so every parameter can be averaged."""

from __future__ import annotations

from torch import Tensor, nn

from ..quant import ActQuant
from .input_conv import InputConv2d
from .width import scaled

GN_GROUPS = 2  # the common choice for GroupNorm ResNets in FL (Hsieh et al., 2020)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(GN_GROUPS, channels), channels)


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.q1 = ActQuant()
        self.norm1 = _norm(out_ch)
        self.q2 = ActQuant()
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.q3 = ActQuant()
        self.norm2 = _norm(out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), ActQuant(), _norm(out_ch)
            )
        self.q_out = ActQuant()

    def forward(self, x: Tensor) -> Tensor:
        h = self.q2(self.norm1(self.q1(self.conv1(x))).relu())
        h = self.norm2(self.q3(self.conv2(h)))
        return self.q_out((h + self.shortcut(x)).relu())


class ResNet(nn.Module):
    def __init__(
        self, channels: int, num_classes: int, widths: tuple[int, ...], blocks: tuple[int, ...]
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            InputConv2d(channels, widths[0], 3, 1, 1, bias=False),
            ActQuant(),
            _norm(widths[0]),
            nn.ReLU(inplace=True),
            ActQuant(),
        )
        stages: list[nn.Module] = []
        in_ch = widths[0]
        for i, (width, n) in enumerate(zip(widths, blocks, strict=True)):
            for j in range(n):
                stages.append(BasicBlock(in_ch, width, 2 if i > 0 and j == 0 else 1))
                in_ch = width
        self.stages = nn.Sequential(*stages)
        self.pool_quant = ActQuant()
        self.classifier = nn.Linear(in_ch, num_classes)
        self.logits_quant = ActQuant()

    def forward(self, x: Tensor) -> Tensor:
        h = self.stages(self.stem(x)).mean(dim=(2, 3))
        return self.logits_quant(self.classifier(self.pool_quant(h)))


def resnet8(channels: int, num_classes: int, width: float = 1.0) -> ResNet:
    widths = tuple(scaled(w, width) for w in (16, 32, 64))
    return ResNet(channels, num_classes, widths=widths, blocks=(1, 1, 1))


def resnet18(channels: int, num_classes: int, width: float = 1.0) -> ResNet:
    widths = tuple(scaled(w, width) for w in (64, 128, 256, 512))
    return ResNet(channels, num_classes, widths=widths, blocks=(2, 2, 2, 2))
