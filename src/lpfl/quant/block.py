"""Block floating point rounding, exactly as the paper (and SWALP before it) defines it.

For a block with largest magnitude ``a`` and word length ``W`` (sign included):
``e = clamp(floor(log2 a), -128, 127)``, step ``2^(e-(W-2))``, mantissa ``x/step``
rounded (stochastically: ``floor(m+u)``) and clamped to ``[-2^(W-1), 2^(W-1)-1]``.
One code path produces both the fake-quantized float tensor used in training and
the integer mantissas + exponents that the wire format sends, so the two can
never disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .formats import EXP_MAX, EXP_MIN, check_bits, check_block, check_rounding

_NUMPY_NOISE_MIN = 1 << 16


class NonFiniteError(ValueError):
    """Raised when a tensor to be quantized holds NaN or Inf (it would poison a whole block)."""


def block_dims(ndim: int, block: str, batch_dims: int = 0) -> tuple[int, ...]:
    """The dimensions that share one exponent.

    ``tensor``: all of them. ``B``: all but dim 0. ``BC``: all but dims 0 and 1, so a
    conv kernel gets one exponent per 3x3 slice and a 2-D Linear weight one per
    element (the reference's quirk). Tensors of dim <= 1 (biases, norm affine
    parameters) always get one exponent for the whole tensor. The first
    ``batch_dims`` dimensions stack independent tensors (one per client) and never
    share an exponent; the rule applies to what follows them.
    """
    check_block(block)
    ndim -= batch_dims
    if block == "tensor" or ndim <= 1:
        dims = range(ndim)
    elif block == "B":
        dims = range(1, ndim)
    else:
        dims = range(2, ndim)
    return tuple(d + batch_dims for d in dims)


def _raise_non_finite(x: Tensor) -> None:
    raise NonFiniteError(f"cannot quantize a tensor of shape {tuple(x.shape)} holding NaN or Inf")


def _exponents(x: Tensor, block: str, batch_dims: int = 0, check: bool = True) -> Tensor:
    """``floor(log2 max|x|)`` per block as int32, shaped to broadcast over x.

    A negative extreme counts one ulp smaller, which only changes the exponent when
    the largest magnitude is exactly -2^k: the mantissa range [-2^(W-1), 2^(W-1)-1]
    holds that value at exponent k-1. Without it, quantizing a block that holds the
    mantissa -2^(W-1) again would raise its exponent and halve its resolution: Q would
    not be idempotent, and sending trained weights over the wire would change them.
    ``frexp`` gives exponents exactly (float log2 can be off by one just below a power
    of two); an all-zero block gets the smallest exponent, so it stays zero.
    """
    x = x.float()
    dims = block_dims(x.ndim, block, batch_dims)
    if not dims:  # one block per element (BC on a 2-D weight): the element's own exponent
        if check and not bool(torch.isfinite(x).all()):
            _raise_non_finite(x)
        mantissa, e = torch.frexp(x)
        e = e - 1 - (mantissa == -0.5).int()  # exactly -2^k: one lower, as above
        return e.masked_fill_(x == 0, EXP_MIN).clamp(EXP_MIN, EXP_MAX)
    # Blocks are always the trailing dimensions: one min/max pass over a flat view.
    lo, hi = torch.aminmax(x.flatten(dims[0]), dim=-1, keepdim=True)
    shape = x.shape[: dims[0]] + (1,) * len(dims)
    hi, neg = hi.view(shape), (-lo).view(shape)
    if check and not bool(torch.maximum(hi, neg).max() < math.inf):  # False for NaN and Inf
        _raise_non_finite(x)
    a = torch.maximum(hi, torch.nextafter(neg, torch.zeros_like(neg)))
    e = torch.frexp(a)[1].sub_(1)
    return e.masked_fill_(a <= 0, EXP_MIN).clamp(EXP_MIN, EXP_MAX)


def block_exponents(x: Tensor, block: str) -> Tensor:
    """Shared exponent per block as int32, shaped to broadcast over x (see ``_exponents``)."""
    return _exponents(x, block)


def pow2(exponent: Tensor) -> Tensor:
    """Exactly 2^e as float32 for integer e in [-149, 127], built from its bit pattern.

    Steps go down to 2^(-128-14), a subnormal; writing the bits avoids relying on
    ``pow``/``exp2`` being exact on every device. Quantization calls this on one
    value per block, many times per training step, so the common all-normal case
    takes the short path.
    """
    biased = exponent.to(torch.int32) + 127
    if bool(biased.min() > 0):
        return (biased << 23).view(torch.float32)
    shift = (biased + 22).clamp(0, 22)  # 2^e = 2^-149 << (e + 149) below the normal range
    bits = torch.where(biased > 0, biased << 23, torch.ones_like(biased) << shift)
    return bits.view(torch.float32)


def _uniform_like(m: Tensor, generator: torch.Generator | None) -> Tensor:
    """U[0,1) noise shaped like m, drawn reproducibly from ``generator``.

    On the CPU, torch's Mersenne Twister is single-threaded and dominates the cost
    of low-precision training; numpy's PCG64, seeded from ``generator``, is about
    twice as fast and just as reproducible. Small tensors, and other devices, use
    torch's own generator: there seeding numpy would cost more than it saves.
    """
    if m.device.type != "cpu" or m.numel() < _NUMPY_NOISE_MIN:
        return torch.rand(m.shape, generator=generator, device=m.device, dtype=m.dtype)
    seed = int(torch.randint(0, 2**62, (), generator=generator))
    return torch.from_numpy(np.random.default_rng(seed).random(m.shape, dtype=np.float32))


def _round_(m: Tensor, rounding: str, generator: torch.Generator | None) -> Tensor:
    """Round the fresh float tensor m to integers in place: floor(m + u), or to nearest."""
    if rounding == "nearest":
        return m.round_()
    return m.add_(_uniform_like(m, generator)).floor_()


def _mantissa(
    x: Tensor,
    bits: int,
    block: str,
    rounding: str,
    generator: torch.Generator | None,
    batch_dims: int = 0,
    check: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """(integer-valued float mantissas, int32 exponents, step) of x in the given format."""
    check_rounding(rounding)
    x = x.detach().float()
    e = _exponents(x, block, batch_dims, check)
    step = pow2(e - (bits - 2))
    limit = 2.0 ** (bits - 1)
    m = _round_(x / step, rounding, generator).clamp(-limit, limit - 1)
    return m, e, step


def block_quantize(
    x: Tensor,
    bits: int,
    block: str = "BC",
    rounding: str = "stochastic",
    generator: torch.Generator | None = None,
    batch_dims: int = 0,
    check: bool = True,
) -> Tensor:
    """Round x to W-bit block floating point and return it as a float tensor of x's dtype.

    ``bits=32`` is full precision and returns x unchanged. Stochastic rounding is
    unbiased (``E[Q(x)] = x`` away from saturation); it draws from ``generator`` so
    runs are reproducible. ``batch_dims`` rounds a stack of tensors (one per client),
    each with its own blocks, in one call; with ``check=False`` a NaN/Inf stays in its
    own slice instead of raising, for callers that drop such clients themselves.
    """
    if check_bits(bits) == 32:
        return x
    m, _, step = _mantissa(x, bits, block, rounding, generator, batch_dims, check)
    return m.mul_(step).to(x.dtype)


@dataclass(frozen=True)
class BlockQuantized:
    """The exact integer representation of a quantized tensor: what goes on the wire."""

    mantissa: Tensor  # int8 (bits <= 8) or int16, the shape of the original tensor
    exponent: Tensor  # int8, one per block, shaped to broadcast against ``mantissa``
    bits: int
    block: str

    def dequantize(self, dtype: torch.dtype = torch.float32) -> Tensor:
        step = pow2(self.exponent.to(torch.int32) - (self.bits - 2))
        return (self.mantissa.to(torch.float32) * step).to(dtype)


def block_decompose(
    x: Tensor,
    bits: int,
    block: str = "BC",
    rounding: str = "stochastic",
    generator: torch.Generator | None = None,
) -> BlockQuantized:
    """Quantize x and return integer mantissas and per-block exponents.

    ``block_decompose(x, ...).dequantize()`` is bit-identical to ``block_quantize``
    with the same generator state.
    """
    if check_bits(bits) == 32:
        raise ValueError("full precision (bits=32) has no block floating point representation")
    m, e, _ = _mantissa(x, bits, block, rounding, generator)
    int_dtype = torch.int8 if bits <= 8 else torch.int16
    return BlockQuantized(m.to(int_dtype), e.to(torch.int8), bits, block)
