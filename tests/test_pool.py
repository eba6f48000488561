"""2x2 average pooling with a broadcast backward: torch's values, for one client or a stack."""

import pytest
import torch
import torch.nn.functional as F
from torch.func import grad, vmap

from lpfl.models import build_model, pool
from lpfl.models.pool import AvgPool2x2


@pytest.mark.parametrize("shape", [(4, 3, 8, 6), (2, 3, 7, 9), (3, 5, 4)])
def test_one_client_is_torchs_pooling_bit_for_bit(shape):
    x = torch.randn(*shape, requires_grad=True)
    out_ref, out = F.avg_pool2d(x, 2), AvgPool2x2()(x)
    assert torch.equal(out, out_ref)
    g = torch.randn_like(out)
    (dx_ref,), (dx,) = torch.autograd.grad(out_ref, x, g), torch.autograd.grad(out, x, g)
    assert torch.equal(dx, dx_ref)


def test_a_stack_under_vmap_folds_into_one_call_with_torchs_values(monkeypatch):
    calls = []
    real = pool._Pool.forward
    monkeypatch.setattr(pool._Pool, "forward", staticmethod(lambda x: calls.append(1) or real(x)))
    x = torch.randn(3, 4, 2, 9, 8)  # clients, batch, channels, odd height
    w = torch.randn(3, 2, 4, 4)

    def loss(fn):
        return lambda xx, ww: (fn(xx) * ww).sum()

    ours = vmap(grad(loss(AvgPool2x2())))(x, w)
    calls_ours = len(calls)
    ref = vmap(grad(loss(lambda xx: F.avg_pool2d(xx, 2))))(x, w)
    assert torch.equal(ours, ref)
    assert calls_ours == 1  # every client's forward in one call


def test_the_convnet_pools_with_it():
    model = build_model("convnet", 3, 32, 10)
    assert sum(isinstance(m, AvgPool2x2) for m in model.modules()) == 3
    assert not any(isinstance(m, torch.nn.AvgPool2d) for m in model.modules())
