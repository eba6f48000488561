"""Training memory: the analytic count against a hand count, and the measured peak."""

from __future__ import annotations

import torch
from torch import nn

from lpfl.costs import analytic_memory, peak_memory, stored_bytes
from lpfl.quant import ActQuant, BlockFormat, PrecisionPolicy


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), ActQuant(), nn.ReLU(), ActQuant(), nn.Linear(3, 2))


def test_analytic_memory_matches_a_hand_count_at_8_bits():
    model = _tiny()
    policy = PrecisionPolicy.uniform(8)
    policy.attach(model, torch.Generator())
    x = torch.randn(5, 4)
    mem = analytic_memory(model, policy.weight, policy.grad, policy.act, 2,
                          lambda: model(x).square().sum())  # fmt: skip
    # Weights (BC blocks): a 2-D weight has one 8-bit exponent per element, a bias one
    # per tensor. Linear(4,3): 12 x (1 + 1) + (3 + 1); Linear(3,2): 6 x 2 + (2 + 1).
    assert mem.weights == 24 + 4 + 12 + 3
    assert mem.grads == mem.weights  # gradients are rounded like weights
    assert mem.optimizer == 2 * 4 * (12 + 3 + 6 + 2)  # Adam: two float32 moments
    # Saved for backward: the input x (5x4, float32, read by the first matmul); ReLU's
    # output (5x3 float32: the rounding point after it makes a new tensor); the second
    # rounding point's output (5x3 at 8 bits + one exponent) read by the second matmul;
    # square's input, the logits (5x2 float32).
    assert mem.activations_fp32 == 80 + 60 + 40
    assert mem.activations == 80 + 60 + 16 + 40
    assert mem.total == 2 * 43 + 184 + 196


def test_full_precision_stores_everything_in_float32():
    model = _tiny()
    x = torch.randn(5, 4)
    fp32 = BlockFormat()
    mem = analytic_memory(model, fp32, fp32, fp32, 0, lambda: model(x).square().sum())
    assert mem.weights == 4 * 23 and mem.optimizer == 0
    # x; the ReLU output, saved by ReLU and by the second matmul (the rounding points
    # are off, so it is one tensor, counted once); the logits.
    assert mem.activations == mem.activations_fp32 == 4 * (20 + 15 + 10)
    assert stored_bytes((3, 4), BlockFormat(6, "tensor")) == (6 * 12 + 8) / 8


def test_measured_peak_sees_a_temporary_allocation():
    def work() -> None:
        a = torch.ones(1_000_000)  # 4 MB live ...
        b = a * 2  # ... then 8 MB at once
        del a, b

    peak = peak_memory(work, torch.device("cpu"))
    assert 8_000_000 <= peak < 8_500_000
