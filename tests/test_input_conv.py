"""The input convolution: torch's own for one client, batched matrix products for a stack."""

import pytest
import torch
from torch import nn
from torch.func import functional_call, vmap

from lpfl.models import build_model, input_conv
from lpfl.models.input_conv import InputConv2d

SETTINGS = [
    dict(padding=1),  # the ConvNet's first layer
    dict(stride=2, padding=3, dilation=2, bias=False),  # a stem with every knob turned
]


def pair(seed: int, **kwargs) -> tuple[nn.Conv2d, InputConv2d]:
    torch.manual_seed(seed)
    ref = nn.Conv2d(3, 8, 3, **kwargs)
    conv = InputConv2d(3, 8, 3, **kwargs)
    conv.load_state_dict(ref.state_dict())
    return ref, conv


@pytest.mark.parametrize("kwargs", SETTINGS)
def test_one_client_is_torchs_convolution_bit_for_bit(kwargs):
    ref, conv = pair(0, **kwargs)
    x = torch.randn(4, 3, 13, 11, requires_grad=True)
    out_ref, out = ref(x), conv(x)
    assert torch.equal(out_ref, out)
    g = torch.randn_like(out)
    grads_ref = torch.autograd.grad(out_ref, [x, *ref.parameters()], g)
    grads = torch.autograd.grad(out, [x, *conv.parameters()], g)
    assert all(torch.equal(a, b) for a, b in zip(grads_ref, grads, strict=True))


@pytest.mark.parametrize("shared_input", [False, True])
@pytest.mark.parametrize("kwargs", SETTINGS)
def test_a_stack_of_clients_matches_mapped_torch_convolutions(kwargs, shared_input, monkeypatch):
    stacked = []
    real = input_conv._StackedConv.apply
    monkeypatch.setattr(input_conv._StackedConv, "apply", lambda *a: stacked.append(1) or real(*a))
    ref, conv = pair(1, **kwargs)
    k = 3
    params = {n: torch.randn(k, *p.shape, requires_grad=True) for n, p in ref.named_parameters()}
    x = torch.randn(*(() if shared_input else (k,)), 5, 3, 13, 11, requires_grad=True)
    dims = (0, None if shared_input else 0)

    def run(model: nn.Module) -> list[torch.Tensor]:
        out = vmap(lambda p, xx: functional_call(model, p, (xx,)), in_dims=dims)(params, x)
        return [out, *torch.autograd.grad(out.square().sum(), [x, *params.values()])]

    for a, b in zip(run(ref), run(conv), strict=True):  # output, then x, weight, bias grads
        assert a.shape == b.shape
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5 * float(a.detach().abs().max()))
    assert stacked == [1]  # the stack took the batched path, once


def test_models_use_it_for_their_first_layer_only():
    for name in ("convnet", "resnet8"):
        model = build_model(name, 3, 32, 10)
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        assert type(convs[0]) is InputConv2d
        assert not any(type(m) is InputConv2d for m in convs[1:])


def test_grouped_or_non_zero_padded_layers_are_refused():
    with pytest.raises(ValueError, match="groups=1"):
        InputConv2d(4, 8, 3, groups=2)
    with pytest.raises(ValueError, match="zero padding"):
        InputConv2d(3, 8, 3, padding=1, padding_mode="reflect")


UNEVEN = dict(stride=(2, 1), padding=(0, 2), dilation=(1, 3))


@pytest.mark.parametrize("kwargs", [*SETTINGS, UNEVEN])
def test_unfold_is_torchs_bit_for_bit(kwargs):
    conv = nn.Conv2d(3, 8, (3, 2), **kwargs)
    x = torch.randn(4, 3, 13, 11)
    geometry = (conv.stride, conv.padding, conv.dilation)
    expected = torch.nn.functional.unfold(x, (3, 2), conv.dilation, conv.padding, conv.stride)
    assert torch.equal(input_conv._unfold(x, (3, 2), geometry), expected)


@pytest.mark.parametrize("kwargs", [*SETTINGS, UNEVEN])
def test_fold_is_torchs_bit_for_bit(kwargs):
    """The input's error in a stack's backward: col2im, the inverse layout of unfold."""
    conv = nn.Conv2d(3, 8, (3, 2), **kwargs)
    geometry = (conv.stride, conv.padding, conv.dilation)
    windows = input_conv._unfold(torch.empty(4, 3, 13, 11), (3, 2), geometry).shape
    cols = torch.randn(windows)
    expected = torch.nn.functional.fold(
        cols, (13, 11), (3, 2), conv.dilation, conv.padding, conv.stride
    )
    assert torch.equal(input_conv._fold(cols, (13, 11), (3, 2), geometry), expected)
