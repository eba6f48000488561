"""Block floating point: grid, error bounds, unbiasedness, saturation, exponents, exact examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lpfl.quant import (
    BlockFormat,
    NonFiniteError,
    block_decompose,
    block_exponents,
    block_quantize,
)

BITS = [2, 4, 6, 8, 12, 16]
BLOCKS = ["tensor", "B", "BC"]


def _step(x: torch.Tensor, bits: int, block: str) -> torch.Tensor:
    return torch.exp2((block_exponents(x, block) - (bits - 2)).float())


def _sample(shape=(6, 5, 3, 3), seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # Magnitudes spread over many binades so blocks get very different exponents.
    return torch.randn(shape, generator=g) * torch.exp2(
        torch.randint(-12, 6, shape, generator=g).float()
    )


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("rounding", ["stochastic", "nearest"])
def test_output_on_grid_and_error_bounded(bits, block, rounding):
    x = _sample()
    q = block_quantize(x, bits, block, rounding, torch.Generator().manual_seed(1))
    step = _step(x, bits, block)
    m = q / step
    assert torch.equal(m, m.round()), "quantized values must be integer multiples of the step"
    limit = 2 ** (bits - 1)
    assert m.min() >= -limit and m.max() <= limit - 1
    clamped = (x / step) > limit - 1  # only the top of the range can saturate
    err = (q - x).abs()[~clamped]
    bound = step.expand_as(x)[~clamped] * (1.0 if rounding == "stochastic" else 0.5)
    assert torch.all(err <= bound)


@pytest.mark.parametrize("bits", [4, 8])
def test_stochastic_rounding_is_unbiased(bits):
    x = torch.tensor([0.3, -0.71, 0.0123, 0.8, -0.45])  # max 0.8: no saturation at 4 bits
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([block_quantize(x, bits, "tensor", "stochastic", g) for _ in range(4000)])
    mean, sem = draws.mean(0), draws.std(0) / 4000**0.5
    assert torch.all((mean - x).abs() <= 4 * sem + 1e-7)
    # and it is genuinely random: not every draw is the same
    assert draws.std(0).max() > 0


def test_hand_worked_example():
    # max |x| = 0.7 -> e = floor(log2 0.7) = -1; W = 4 -> step = 2^(-1-2) = 1/8;
    # mantissas 2.4, -5.6, 0.8, 0 round to 2, -6, 1, 0.
    x = torch.tensor([0.3, -0.7, 0.1, 0.0])
    q = block_quantize(x, 4, "tensor", "nearest")
    assert q.tolist() == [0.25, -0.75, 0.125, 0.0]
    d = block_decompose(x, 4, "tensor", "nearest")
    assert d.mantissa.tolist() == [2, -6, 1, 0]
    assert d.exponent.flatten().tolist() == [-1]


def test_saturation_at_top_of_range():
    # 1.999: e = 0, W = 8, step = 1/64, m = 127.94 -> 128 -> clamped to 127.
    x = torch.tensor([1.999, -1.999, 0.5])
    q = block_quantize(x, 8, "tensor", "nearest")
    assert q[0].item() == 127 / 64
    assert q[1].item() == -128 / 64
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        assert block_quantize(x, 8, "tensor", "stochastic", g)[0].item() <= 127 / 64


def test_exponent_is_exact_just_below_a_power_of_two():
    x = torch.tensor([torch.nextafter(torch.tensor(1.0), torch.tensor(0.0)).item()])
    assert block_exponents(x, "tensor").item() == -1


@pytest.mark.parametrize(
    ("shape", "block", "expected"),
    [
        ((8, 4, 3, 3), "BC", (8, 4, 1, 1)),  # one per 3x3 kernel
        ((8, 4, 3, 3), "B", (8, 1, 1, 1)),  # one per output channel
        ((8, 4, 3, 3), "tensor", (1, 1, 1, 1)),
        ((10, 20), "BC", (10, 20)),  # the reference quirk: one per Linear element
        ((10, 20), "B", (10, 1)),
        ((10, 20), "tensor", (1, 1)),
        ((7,), "BC", (1,)),  # biases and norm parameters: one per tensor
        ((7,), "B", (1,)),
        ((7,), "tensor", (1,)),
    ],
)
def test_exponents_per_block_mode(shape, block, expected):
    x = torch.randn(shape)
    e = block_exponents(x, block)
    assert tuple(e.shape) == expected
    d = block_decompose(x, 8, block, "nearest")
    assert tuple(d.exponent.shape) == expected and d.exponent.dtype == torch.int8


def test_exponents_match_per_block_maxima():
    x = torch.zeros(2, 3, 2, 2)
    x[0, 1, 0, 0] = 5.0  # floor(log2 5) = 2
    x[1, 2, 1, 1] = -0.2  # floor(log2 0.2) = -3
    e = block_exponents(x, "BC").squeeze()
    assert e[0, 1] == 2 and e[1, 2] == -3
    assert e[0, 0] == -128, "an all-zero block takes the smallest exponent"


def test_zero_block_stays_zero_and_extreme_exponents_clamp():
    x = torch.zeros(3, 4, 3, 3)
    assert torch.equal(block_quantize(x, 8, "BC", "stochastic"), x)
    tiny = torch.full((4,), 1e-40)  # below 2^-128: exponent clamps to -128
    assert block_exponents(tiny, "tensor").item() == -128
    huge = torch.full((4,), 3e38)
    assert block_exponents(huge, "tensor").item() == 127
    assert torch.isfinite(block_quantize(huge, 8, "tensor", "nearest")).all()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_input_raises(bad):
    x = torch.tensor([1.0, bad, 2.0])
    with pytest.raises(NonFiniteError, match="NaN or Inf"):
        block_quantize(x, 8)


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_unchecked_blocks_holding_nan_or_inf_come_out_all_nan(rounding):
    """A caller that skips the check (the vectorized engine) must still see a broken block:
    an Inf would otherwise saturate to a finite mantissa. Other blocks are untouched."""
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    x[1, 2], x[2, 4] = math.inf, math.nan
    g = torch.Generator().manual_seed(1)
    out = block_quantize(x, 8, "B", rounding, g, check=False)
    clean = block_quantize(x[[0, 3]], 8, "B", "nearest", check=False)
    assert out[[1, 2]].isnan().all()
    assert torch.isfinite(out[[0, 3]]).all()
    if rounding == "nearest":
        assert torch.equal(out[[0, 3]], clean)


def test_full_precision_is_identity():
    x = _sample()
    assert block_quantize(x, 32) is x
    assert BlockFormat(32).full_precision
    with pytest.raises(ValueError, match="full precision"):
        block_decompose(x, 32)


@pytest.mark.parametrize("bits", [1, 17, 31, 0])
def test_bad_bits_refused(bits):
    with pytest.raises(ValueError, match="bits must be"):
        block_quantize(torch.ones(3), bits)


def test_bad_block_and_rounding_refused():
    with pytest.raises(ValueError, match="block must be"):
        block_quantize(torch.ones(3), 8, block="C")
    with pytest.raises(ValueError, match="rounding must be"):
        block_quantize(torch.ones(3), 8, rounding="up")


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("block", BLOCKS)
def test_decompose_is_bit_identical_to_quantize(bits, block):
    x = _sample(seed=bits)
    q = block_quantize(x, bits, block, "stochastic", torch.Generator().manual_seed(7))
    d = block_decompose(x, bits, block, "stochastic", torch.Generator().manual_seed(7))
    assert d.mantissa.dtype == (torch.int8 if bits <= 8 else torch.int16)
    assert torch.equal(d.dequantize(), q)


def test_same_generator_seed_same_rounding():
    x = _sample()
    a = block_quantize(x, 6, "BC", "stochastic", torch.Generator().manual_seed(3))
    b = block_quantize(x, 6, "BC", "stochastic", torch.Generator().manual_seed(3))
    c = block_quantize(x, 6, "BC", "stochastic", torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_pow2_is_exact_over_the_whole_step_range():
    from lpfl.quant.block import pow2

    e = torch.arange(-149, 128)
    expected = torch.tensor([2.0**k for k in e.tolist()], dtype=torch.float64)
    assert torch.equal(pow2(e).double(), expected)
    assert torch.equal(pow2(torch.tensor([3, -2])), torch.tensor([8.0, 0.25]))  # normal-only path


@pytest.mark.parametrize("bits", [4, 8, 16])
def test_tiny_blocks_use_subnormal_steps_exactly(bits):
    # max |x| = 2^-127 gives e = -127 and a step of 2^(-127-(W-2)), below float32's normal range.
    x = torch.tensor([2.0**-127, -(2.0**-128), 0.0])
    q = block_quantize(x, bits, "tensor", "nearest")
    assert torch.equal(q, x)


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8, 16])
@pytest.mark.parametrize("block", BLOCKS)
def test_quantization_is_idempotent(bits, block):
    # Quantized blocks often hold the mantissa -2^(W-1), i.e. the value -2^(e+1);
    # rounding them again must keep the exponent, so Q(Q(x)) == Q(x).
    x = _sample(seed=bits)
    q = block_quantize(x, bits, block, "stochastic", torch.Generator().manual_seed(0))
    assert torch.equal(block_quantize(q, bits, block, "nearest"), q)
    g = torch.Generator().manual_seed(1)
    assert torch.equal(block_quantize(q, bits, block, "stochastic", g), q)


def test_exact_negative_power_of_two_keeps_the_finer_exponent():
    # -1.0 is the mantissa -8 at exponent -1 (W = 4), so the block keeps step 1/8.
    x = torch.tensor([-1.0, 0.3])
    assert block_exponents(x, "tensor").item() == -1
    assert block_quantize(x, 4, "tensor", "nearest").tolist() == [-1.0, 0.25]
    assert block_exponents(torch.tensor([1.0, 0.3]), "tensor").item() == 0


def _reference(x: np.ndarray, noise: np.ndarray | None, bits: int) -> np.ndarray:
    """The paper's formula for rows of one block each, written independently in numpy.

    Exponents from float64 ``frexp`` of each row's largest magnitude (a negative extreme
    counted one float32 ulp smaller), steps as exact float64 powers of two, rounding
    half to even or ``floor(m + u)`` with the sum taken in float32 as lpfl takes it.
    """
    hi = x.max(axis=1, keepdims=True)
    neg = np.nextafter(-x.min(axis=1, keepdims=True), np.float32(0))
    a = np.maximum(hi, neg).astype(np.float64)
    e = np.where(a > 0, np.frexp(a)[1] - 1, -128).clip(-128, 127)
    step = np.ldexp(1.0, e - (bits - 2))
    scaled = x.astype(np.float64) / step  # exact: a power-of-two scaling of a float32
    if noise is None:
        m = np.round(scaled)  # numpy rounds half to even
    else:
        m = np.floor((scaled.astype(np.float32) + noise).astype(np.float64))
    m = m.clip(-(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1)
    return (m * step).astype(np.float32)


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("rounding", ["stochastic", "nearest"])
def test_matches_an_independent_reference(bits, rounding):
    """Rows from 2^-140 to 2^120 in magnitude, one and many elements per block."""
    g = torch.Generator().manual_seed(bits)
    wide = torch.randn(200, 7, generator=g) * torch.exp2(
        torch.randint(-140, 120, (200, 1), generator=g).float()
    )
    wide[:20, 0] = -torch.exp2(torch.randint(-140, 120, (20,), generator=g).float())  # -2^k
    for x, block in ((wide, "B"), (wide[:, :1], "B"), (wide.flatten()[:300].view(30, 10), "BC")):
        rows = x if block == "B" else x.reshape(-1, 1)  # BC on a 2-D tensor: one per element
        noise = None
        if rounding == "stochastic":
            noise = torch.rand(rows.shape, generator=torch.Generator().manual_seed(9))
        gen = torch.Generator().manual_seed(9)
        ours = block_quantize(x, bits, block, rounding, gen).reshape(rows.shape)
        ref = _reference(rows.numpy(), None if noise is None else noise.numpy(), bits)
        np.testing.assert_array_equal(ours.numpy(), ref)
