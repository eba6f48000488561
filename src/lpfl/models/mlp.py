"""A plain multilayer perceptron, rounded after every linear layer and every ReLU."""

from __future__ import annotations

from torch import Tensor, nn

from ..quant import ActQuant


class MLP(nn.Module):
    def __init__(
        self, in_features: int, num_classes: int, hidden: tuple[int, ...] = (200, 200)
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), ActQuant(), nn.ReLU(inplace=True), ActQuant()]
            width = h
        layers += [nn.Linear(width, num_classes), ActQuant()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
