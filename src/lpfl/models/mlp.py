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
        # Body and head kept apart (as in every model here) so FedGen can feed generated
        # features straight into the head: see ``models.head_forward``.
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes)
        self.logits_quant = ActQuant()

    def forward(self, x: Tensor) -> Tensor:
        return self.logits_quant(self.classifier(self.features(x)))
