"""GroupNorm + ReLU as one layer: torch's values for one client; the Triton kernels'
rule for a stack of clients (run here under Triton's interpreter)."""

import os
import subprocess
import sys
import textwrap

import torch
from torch import nn

from lpfl.models import build_model
from lpfl.models.norm_relu import GroupNormReLU, _NormReLU


def grads_of(out: torch.Tensor, wrt: list[torch.Tensor], g: torch.Tensor) -> list[torch.Tensor]:
    return [out.detach(), *torch.autograd.grad(out, wrt, g)]


def test_the_layer_is_groupnorm_then_relu_bit_for_bit():
    torch.manual_seed(0)
    ref = nn.GroupNorm(6, 6)
    nn.init.normal_(ref.weight), nn.init.normal_(ref.bias)
    layer = GroupNormReLU(6)
    layer.load_state_dict(ref.state_dict())
    x = torch.randn(4, 6, 5, 7, requires_grad=True)
    g = torch.randn(4, 6, 5, 7)
    expected = grads_of(torch.relu(ref(x)), [x, *ref.parameters()], g)
    got = grads_of(layer(x), [x, *layer.parameters()], g)
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))


def test_one_clients_function_is_torchs_ops_bit_for_bit():
    """The path a CUDA run's single client takes (the sequential engine), here on the CPU."""
    torch.manual_seed(1)
    x = torch.randn(3, 4, 6, 6, requires_grad=True)
    w, b = torch.randn(4, requires_grad=True), torch.randn(4, requires_grad=True)
    g = torch.randn(3, 4, 6, 6)
    ref = torch.relu(torch.nn.functional.group_norm(x, 4, w, b))
    got = _NormReLU.apply(x, w, b, 1e-5)[0]
    assert all(
        torch.equal(a, e)
        for a, e in zip(grads_of(got, [x, w, b], g), grads_of(ref, [x, w, b], g), strict=True)
    )


STACK_UNDER_INTERPRETER = textwrap.dedent(
    """
    import torch
    import torch.nn.functional as F
    from torch.func import vmap
    from lpfl.models import norm_relu, triton_norm

    calls = []
    real = triton_norm.StackedNormReLU.apply
    triton_norm.StackedNormReLU.apply = lambda *a: calls.append(1) or real(*a)
    torch.manual_seed(2)
    x = torch.randn(3, 2, 4, 5, 6, requires_grad=True)  # clients, batch, channels, H, W
    w, b = torch.randn(3, 4, requires_grad=True), torch.randn(3, 4, requires_grad=True)
    g = torch.randn(3, 2, 4, 5, 6)
    out = vmap(lambda xx, ww, bb: norm_relu._NormReLU.apply(xx, ww, bb, 1e-5)[0])(x, w, b)
    got = [out.detach(), *torch.autograd.grad(out, (x, w, b), g)]
    y = vmap(lambda xx, ww, bb: F.group_norm(xx, 4, ww, bb))(x, w, b)
    assert torch.equal(out.detach() > 0, y.detach() > 0)
    ref = [y.detach().relu(), *torch.autograd.grad(y, (x, w, b), g * (y.detach() > 0))]
    for a, r in zip(got, ref, strict=True):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-5 * float(r.abs().max()))
    assert calls == [1], calls
    print("stack ok")
    """
)


def test_a_stack_runs_the_triton_kernels_with_torchs_values():
    env = os.environ | {"TRITON_INTERPRET": "1"}
    done = subprocess.run(
        [sys.executable, "-c", STACK_UNDER_INTERPRETER], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "stack ok" in done.stdout


def test_the_convnet_keeps_the_reference_parameter_names():
    model = build_model("convnet", 3, 32, 10)
    names = [n for n, _ in model.named_parameters()]
    layers = [i for stage in (0, 7, 14) for i in (stage, stage + 2)]  # conv, then norm
    stages = [f"features.{i}.{p}" for i in layers for p in ("weight", "bias")]
    assert names == [*stages, "classifier.weight", "classifier.bias"]
    assert sum(isinstance(m, GroupNormReLU) for m in model.modules()) == 3
