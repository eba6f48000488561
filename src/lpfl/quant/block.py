"""Block floating point rounding, exactly as the paper (and SWALP before it) defines it.

For a block with largest magnitude ``a`` and word length ``W`` (sign included):
``e = clamp(floor(log2 a), -128, 127)``, step ``2^(e-(W-2))``, mantissa ``x/step``
rounded (stochastically: ``floor(m+u)``) and clamped to ``[-2^(W-1), 2^(W-1)-1]``.
One code path produces both the fake-quantized float tensor used in training and
the integer mantissas + exponents that the wire format sends, so the two can
never disagree.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .formats import EXP_MAX, EXP_MIN, check_bits, check_block, check_rounding

_NUMPY_NOISE_MIN = 1 << 14  # where seeding numpy (~15 us) starts to pay
logger = logging.getLogger(__name__)


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


def non_finite(shape: tuple[int, ...]) -> NonFiniteError:
    """The error for a tensor of this shape that holds NaN or Inf."""
    return NonFiniteError(f"cannot quantize a tensor of shape {tuple(shape)} holding NaN or Inf")


def _rows(x: Tensor, block: str, batch_dims: int) -> tuple[Tensor, tuple[int, ...]]:
    """x viewed as (blocks, elements per block), and the shape of one value per block.

    Every rounding block is one row: blocks are always trailing dimensions, so this is
    a plain reshape; one block per element (BC on a 2-D weight) is one column. One 2-D
    layout for every tensor also lets the fused kernel compile once instead of once per
    shape. The block shape broadcasts per-block values (exponents, steps) over x.
    """
    dims = block_dims(x.ndim, block, batch_dims)
    if not dims:
        return x.reshape(-1, 1), tuple(x.shape)
    lead = x.shape[: dims[0]]
    return x.reshape(math.prod(lead), -1), tuple(lead) + (1,) * len(dims)


def _pow2_normal(e: Tensor) -> Tensor:
    """2^e for int32 e in [-126, 127]: the float32 whose exponent field is e."""
    return ((e + 127) << 23).view(torch.float32)


def pow2(exponent: Tensor) -> Tensor:
    """Exactly 2^e as float32 for integer e in [-149, 127], built from its bit pattern.

    Steps go down to 2^(-128-14), a subnormal: that is the product of 2^-126 and a
    normal power of two, and the product is exact because it is representable.
    Writing bits avoids relying on ``pow``/``exp2`` being exact on every device; only
    int32 shifts are used (a compiled GPU kernel widened a shifted ``ones_like`` to
    64 bits and could not reinterpret it), and no data-dependent branch, which would
    make the GPU wait for the host on every one of a step's dozens of roundings.
    """
    e = exponent.to(torch.int32)
    normal = e.clamp(min=-126)
    return _pow2_normal(normal) * _pow2_normal(e - normal)


def _row_exponents(rows: Tensor) -> tuple[Tensor, Tensor]:
    """(``floor(log2 max|x|)`` as int32, max |x|) per row of a row view.

    A negative extreme counts one ulp smaller, which only changes the exponent when
    the largest magnitude is exactly -2^k: the mantissa range [-2^(W-1), 2^(W-1)-1]
    holds that value at exponent k-1. Without it, quantizing a block that holds the
    mantissa -2^(W-1) again would raise its exponent and halve its resolution: Q would
    not be idempotent, and sending trained weights over the wire would change them.
    ``frexp`` gives exponents exactly (float log2 can be off by one just below a power
    of two); an all-zero block gets the smallest exponent, so it stays zero. The max
    is NaN or Inf exactly when the row holds one, which callers may check. Rows of one
    element (a Linear weight in BC blocks: every value its own exponent) skip the
    reduction, which would cost a full pass there.
    """
    lo, hi = (rows, rows) if rows.shape[1] == 1 else torch.aminmax(rows, dim=1, keepdim=True)
    neg = -lo
    a = torch.maximum(hi, torch.nextafter(neg, neg.new_zeros(())))
    e = torch.frexp(a)[1] - 1
    return torch.where(a > 0, e, EXP_MIN).clamp(EXP_MIN, EXP_MAX), torch.maximum(hi, neg)


Scale = tuple[Tensor, Tensor]  # 2^k as two normal powers of two, see ``_scale``


def _parts(rows: Tensor, noise: Tensor | None, bits: int) -> tuple[Tensor, Tensor, Scale, Tensor]:
    """(integer-valued float mantissas, int32 exponents, scale, max |x|) per row of a row view.

    ``noise`` (U[0,1), or None for round-to-nearest) is drawn by the caller, so this
    function is pure and fusable. The mantissas are ``x * 2^k`` rounded, and ``scale``
    is 2^k as two normal powers of two whose product it is (see ``_scale``).
    """
    e, peak = _row_exponents(rows)
    scale = _scale((bits - 2) - e)  # mantissa = x * 2^k
    scaled = rows * scale[0] * scale[1]
    m = scaled.round() if noise is None else (scaled + noise).floor()
    limit = 2.0 ** (bits - 1)
    return m.clamp(-limit, limit - 1), e, scale, peak


def _scale(k: Tensor) -> Scale:
    """2^k (int32 k) as two normal powers of two, 2^floor(k/2) and the rest.

    Multiplying by both, or dividing by both, is exact wherever the result is
    representable, which the mantissas and the rounded values always are: scaling by a
    power of two rounds nothing, down to the subnormal steps. Never by one power, and
    never by a step: with e in [-128, 127] and W in [2, 16], k lies in [-127, 142], and
    neither 2^142 nor the reciprocal a compiler may swap a division for (2^134 for the
    smallest step) exists in float32, while both halves lie in [-64, 71]. They are
    built from their bits alone: with one exponent per element these per-row ops are
    as large as the tensor, so a subnormal split, or a separate step, would add a
    handful of full-size passes (about a fifth of such a rounding's time on the CPU).
    """
    half = k >> 1  # floor(k / 2): an arithmetic shift, several times cheaper than a division
    return _pow2_normal(half), _pow2_normal(k - half)


def _fake_quantize(
    rows: Tensor,
    noise: Tensor | None,
    bits: int,
    shape: tuple[int, ...],
    block_shape: tuple[int, ...],
) -> tuple[Tensor, Tensor]:
    """(rounded values shaped like the input, max |x| per block), in one fused kernel.

    The step 2^-k is the reciprocal of the scale's two factors, divided out one after
    the other: exact, as ``_scale`` says, down to the subnormal steps. The last multiply
    is done in the input's shape so that it makes a new tensor: returning a view of the
    row-shaped intermediate would make a rounded activation a view, which autograd
    forbids an in-place op (ReLU) on. A block holding NaN or Inf comes out all NaN, as
    from the Triton kernels: its other values would be garbage (an Inf saturates to the
    largest mantissa, a finite value), and a caller that skips the check must still see
    that this client's numbers broke. Its step is made NaN, one value per block, so
    this costs no pass over the tensor.
    """
    m, _, (up, up2), peak = _parts(rows, noise, bits)
    step = torch.where(peak < math.inf, 1.0 / up / up2, math.nan)
    return m.view(shape) * step.view(block_shape), peak


_fused: dict[str, object] = {"on": False, "fn": None}
# Where the fused path runs lpfl's Triton kernels. Tests add "cpu" under Triton's
# interpreter, which runs the same kernels with numpy.
TRITON_DEVICES: tuple[str, ...] = ("cuda",)


def use_fused(enabled: bool) -> None:
    """Round through fused kernels instead of a few dozen eager ops.

    Rounding is elementwise work around one reduction; eager PyTorch launches a kernel
    per op and rereads the tensor each time, which dominates a low-precision step on
    a GPU. The fused kernels (Triton on CUDA, torch.compile elsewhere) compute exactly
    the same values as the eager ops for finite input and the same noise (tests check
    both); the Triton ones draw that noise themselves, from another stream than
    ``torch.rand``'s, so a CUDA run's stochastic roundings differ from an eager run's
    draw by draw, not in distribution. Compiling costs seconds up front, so it is
    worth it on long runs, not in tests.
    """
    if enabled and _fused["fn"] is None:
        # One graph per (rank, block rank) pair: more than dynamo's default allows.
        dynamo = torch._dynamo.config
        limit = "recompile_limit" if hasattr(dynamo, "recompile_limit") else "cache_size_limit"
        setattr(dynamo, limit, max(getattr(dynamo, limit), 64))
        _fused["fn"] = torch.compile(_fake_quantize, dynamic=True)
    _fused["on"] = enabled


def _fused_quantize(
    rows: Tensor,
    rounding: str,
    generator: torch.Generator | None,
    bits: int,
    shape: tuple[int, ...],
    block_shape: tuple[int, ...],
) -> tuple[Tensor, Tensor]:
    """The fused kernel; where it cannot be built, say so once and stay eager.

    On CUDA that is lpfl's own Triton kernel (``triton_round``), which can be checked
    without a GPU and draws its own noise from a seed; elsewhere the ``torch.compile`` one.
    """
    triton = rows.device.type in TRITON_DEVICES
    noise = None if triton else _noise(rows, rounding, generator)  # the fallback's too
    try:
        if not triton:
            return _fused["fn"](rows, noise, bits, shape, block_shape)  # type: ignore[operator]
        from . import triton_round  # imports Triton, which only CUDA runs need

        if triton_round.fits(rows):
            seed = _seed(rows, rounding, generator)
            return triton_round.fake_quantize(rows, seed, bits, shape, block_shape)
    except Exception as exc:  # a compiler or backend failure, not a property of the data
        logger.warning("fused rounding unavailable, rounding with eager ops: %s", exc)
        _fused["on"] = False
    if triton:
        noise = _noise(rows, rounding, generator)
    return _fake_quantize(rows, noise, bits, shape, block_shape)


def fused_enabled() -> bool:
    return bool(_fused["on"])


def block_exponents(x: Tensor, block: str) -> Tensor:
    """Shared exponent per block as int32, shaped to broadcast over x (see ``_row_exponents``)."""
    rows, block_shape = _rows(x.detach().float(), block, 0)
    return _row_exponents(rows)[0].reshape(block_shape)


def _uniform_like(m: Tensor, generator: torch.Generator | None) -> Tensor:
    """U[0,1) noise shaped like m, drawn reproducibly from ``generator``.

    On the CPU, torch's Mersenne Twister is single-threaded and dominates the cost
    of low-precision training; numpy's PCG64, seeded from ``generator``, is about
    twice as fast and just as reproducible. Small tensors, and other devices, use
    torch's own generator: there seeding numpy would cost more than it saves.
    """
    if generator is not None and generator.device != m.device:  # e.g. wire encoding on the host
        return torch.rand(m.shape, generator=generator, device=generator.device).to(m.device)
    if m.device.type != "cpu" or m.numel() < _NUMPY_NOISE_MIN:
        return torch.rand(m.shape, generator=generator, device=m.device, dtype=m.dtype)
    seed = int(torch.randint(0, 2**62, (), generator=generator))
    return torch.from_numpy(np.random.default_rng(seed).random(m.shape, dtype=np.float32))


def _noise(rows: Tensor, rounding: str, generator: torch.Generator | None) -> Tensor | None:
    check_rounding(rounding)
    return None if rounding == "nearest" else _uniform_like(rows, generator)


def _seed(rows: Tensor, rounding: str, generator: torch.Generator | None) -> Tensor | None:
    """For the Triton kernels: one int64 drawn from ``generator``, on rows' device.

    Drawn on the device (no host round trip), and a fresh one per call, so no two
    roundings of a run share noise.
    """
    check_rounding(rounding)
    if rounding == "nearest":
        return None
    device = rows.device if generator is None else generator.device
    return torch.randint(0, 2**62, (1,), generator=generator, device=device).to(rows.device)


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
    own slice instead of raising, for callers that drop such clients themselves (and
    the GPU never waits for the host to look).
    """
    if check_bits(bits) == 32:
        return x
    rows, block_shape = _rows(x.detach().float(), block, batch_dims)
    if _fused["on"]:
        out, peak = _fused_quantize(rows, rounding, generator, bits, x.shape, block_shape)
    else:
        noise = _noise(rows, rounding, generator)
        out, peak = _fake_quantize(rows, noise, bits, x.shape, block_shape)
    if check and not bool((peak < math.inf).all()):  # False for NaN and Inf
        raise non_finite(x.shape)
    return out.to(x.dtype)


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
    batch_dims: int = 0,
    check: bool = True,
) -> BlockQuantized:
    """Quantize x and return integer mantissas and per-block exponents.

    ``block_decompose(x, ...).dequantize()`` is bit-identical to ``block_quantize``
    with the same generator state. ``batch_dims`` and ``check`` work as there: the wire
    encoder decomposes every client's copy of a tensor in one call and drops a
    client whose slice is not finite itself.
    """
    if check_bits(bits) == 32:
        raise ValueError("full precision (bits=32) has no block floating point representation")
    x = x.detach().float()
    rows, block_shape = _rows(x, block, batch_dims)
    m, e, _, peak = _parts(rows, _noise(rows, rounding, generator), bits)
    if check and not bool((peak < math.inf).all()):
        raise non_finite(x.shape)
    m, e = m.reshape(x.shape), e.reshape(block_shape)
    int_dtype = torch.int8 if bits <= 8 else torch.int16
    return BlockQuantized(m.to(int_dtype), e.to(torch.int8), bits, block)
