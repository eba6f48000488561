"""The autograd rounding points and the per-role policy used in local training."""

from __future__ import annotations

import torch
from torch import nn

from lpfl.quant import ActQuant, PrecisionPolicy, attach_precision, block_exponents


def _on_grid(t: torch.Tensor, bits: int, block: str) -> bool:
    step = torch.exp2((block_exponents(t, block) - (bits - 2)).float())
    m = t / step
    return bool(torch.equal(m, m.round()))


def test_actquant_rounds_forward_and_backward_errors():
    policy = PrecisionPolicy.uniform(6, "stochastic")
    point = ActQuant()
    g = torch.Generator().manual_seed(0)
    attach_precision(point, policy.act, policy.err, g)
    x = torch.randn(4, 8, requires_grad=True)
    y = point(x)
    assert _on_grid(y.detach(), 6, "tensor") and not _on_grid(x.detach(), 6, "tensor")
    upstream = torch.randn(4, 8)
    (y * upstream).sum().backward()
    assert _on_grid(x.grad, 6, "tensor"), "the backward error must be rounded too"
    assert not torch.equal(x.grad, upstream)


def test_actquant_is_identity_when_off_or_full_precision():
    point = ActQuant()
    x = torch.randn(3, 3)
    assert point(x) is x
    full = PrecisionPolicy.uniform(32)
    attach_precision(point, full.act, full.err)
    assert point(x) is x and full.full_precision


def test_policy_rounds_weights_and_grads_in_place():
    torch.manual_seed(0)
    layer = nn.Conv2d(3, 4, 3)
    policy = PrecisionPolicy.uniform(8, "nearest")
    layer(torch.randn(2, 3, 5, 5)).square().sum().backward()
    policy.quantize_grads_(layer.parameters())
    policy.quantize_weights_(layer.parameters())
    assert _on_grid(layer.weight.grad, 8, "BC") and _on_grid(layer.bias.grad, 8, "BC")
    assert _on_grid(layer.weight.detach(), 8, "BC") and _on_grid(layer.bias.detach(), 8, "BC")


def test_policy_blocks_per_role():
    p = PrecisionPolicy.uniform(8, weight_block="B", act_block="BC")
    assert (p.weight.block, p.grad.block, p.act.block, p.err.block) == ("B", "B", "BC", "BC")
    p = PrecisionPolicy.uniform(8, grad_block="tensor", err_block="B")
    assert (p.weight.block, p.grad.block, p.act.block, p.err.block) == (
        "BC",
        "tensor",
        "tensor",
        "B",
    )


def test_policy_refuses_a_model_without_rounding_points():
    import pytest

    with pytest.raises(ValueError, match="no ActQuant"):
        PrecisionPolicy.uniform(8).attach(nn.Linear(3, 3))
