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
from .ensemble import Ensemble
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


HEAD = "classifier"  # the name of every model's final Linear layer


def feature_dim(model: nn.Module) -> int:
    """Width of the features entering the classifier."""
    return _classifier(model).in_features


def num_classes(model: nn.Module) -> int:
    if isinstance(model, Ensemble):  # SplitMix: every base classifies on its own
        return num_classes(model.bases[0])
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


def stacking_pays(model: nn.Module) -> bool:
    """Whether running K copies of ``model`` as one stack (``vmap``) beats running them
    one after another, on the device that holds it: on CUDA, yes (3x for the paper's
    ConvNet's training); on the CPU only without convolutions, which ``vmap`` turns into
    grouped ones that take about 2x as long there (``results/engine-speed-cpu-convnet.json``)."""
    on_cuda = next(model.parameters()).device.type == "cuda"
    return on_cuda or not any(isinstance(m, nn.Conv2d) for m in model.modules())


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
    "scaled",
    "stacking_pays",
]
