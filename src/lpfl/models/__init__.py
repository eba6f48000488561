"""Model zoo: every model marks its activation rounding points with ``ActQuant``.

Every model ends the same way: features -> ``classifier`` (a Linear) -> ``logits_quant``.
That uniform head is what FedGen's generator feeds and the server reads from client
models; ``head_forward`` runs it on features alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import Tensor, nn
from torch.func import functional_call

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


HEAD = "classifier"  # the name of every model's final Linear layer


def feature_dim(model: nn.Module) -> int:
    """Width of the features entering the classifier."""
    return _classifier(model).in_features


def num_classes(model: nn.Module) -> int:
    return _classifier(model).out_features


def head_forward(
    model: nn.Module, features: Tensor, params: Mapping[str, Tensor] | None = None
) -> Tensor:
    """Logits from features, through the head with the model's own output rounding.

    ``params`` (names as in the whole model's ``named_parameters``) replace the module's
    parameters, so the vectorized engine can run one client's head under ``vmap``.
    """
    classifier = _classifier(model)
    if params is None:
        logits = classifier(features)
    else:
        own = {name: params[f"{HEAD}.{name}"] for name, _ in classifier.named_parameters()}
        logits = functional_call(classifier, own, (features,))
    return model.logits_quant(logits)


def _classifier(model: nn.Module) -> nn.Linear:
    head = getattr(model, HEAD, None)
    if not isinstance(head, nn.Linear):
        raise TypeError(f"{type(model).__name__} has no Linear {HEAD!r} head")
    return head


__all__ = [
    "HEAD",
    "MLP",
    "MODELS",
    "ConvNet",
    "ResNet",
    "build_model",
    "feature_dim",
    "head_forward",
    "num_classes",
    "resnet8",
    "resnet18",
]
