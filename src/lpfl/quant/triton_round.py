"""Block rounding as hand-written Triton kernels: the fused path on CUDA.

Why not let ``torch.compile`` write them, as on the CPU? On the one GPU slot so far
the compiler's kernel failed to build (it widened a bit pattern to 64 bits), and lpfl
ran its 8-bit rounds with eager ops at 2.3x the cost of a 32-bit step. A GPU is not
at hand to check a compiler's output, but these kernels can be checked without one:
Triton's interpreter runs them on the CPU (the tests compare every value with the
eager ops) and Triton compiles them for an H100 target offline (the tests build them).

The arithmetic is that of ``block._parts`` step by step (same exponent, same split of
the scale into two normal powers of two), so the values are bit-identical to the
eager ops given the same noise, for finite input. A row (rounding block) holding NaN
or Inf comes out all NaN, so a client's bad slice cannot pass for finite; its peak is
Inf, which ``block_quantize``'s check reports.

Stochastic rounding draws its noise inside the kernel (Philox, keyed by one seed per
call and indexed by the element's position) instead of reading a tensor that
``torch.rand`` wrote: an activation of the paper's step is 134 million elements, and
writing and rereading their noise was two fifths of a rounding's memory traffic.
One Philox draw gives four 32-bit numbers, and four neighbouring elements of a row
share it: drawn per element, Philox was three quarters of the rounding pass's
instructions (91 per element at 8 bits, 50 when shared, counted in the PTX built for
an H100 by ``benchmarks/kernel_instructions.py``). On the H200 the unshared kernels took
0.93 ms for a first-stage activation (``results/gpu-h200-2026-11-27b/rounding-speed.json``)
whose memory traffic alone takes about a third of that.
``uniform`` writes the same noise out, so the checks can hand it to the eager ops.

Rows of up to ``TILE`` elements (weights, gradients, biases: most calls) are rounded
in one kernel that holds whole rows; longer rows (activations, errors) take two:
a row-max pass with an atomic max per row, then the rounding pass.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

TILE = 4096  # elements one program holds: whole rows up to this length
CHUNK = 4096  # elements per program along a long row
_INF_BITS = tl.constexpr(0x7F800000)
# 1.5 * 2^23: adding and subtracting it rounds |v| < 2^22 to an integer, ties to even.
_ROUND_MAGIC = tl.constexpr(12582912.0)


@triton.jit
def _key_bits(x):
    """Per element, the int32 bits of the magnitude whose row max sets the exponent.

    ``x`` itself for x >= 0, and for x < 0 the float just below -x (see
    ``block._row_exponents``: the mantissa range holds -2^k one exponent lower).
    NaN and +-Inf map to +Inf. Non-negative floats order like their bit patterns, so
    the max can be taken (and atomically) on int32.
    """
    neg = -x
    below = (neg.to(tl.int32, bitcast=True) - 1).to(tl.float32, bitcast=True)
    key = tl.where(x >= 0, x, tl.where(neg > 0, below, 0.0))
    key = tl.where(tl.abs(x) < float("inf"), key, float("inf"))
    return tl.maximum(key.to(tl.int32, bitcast=True), 0)  # -0.0 counts as 0


@triton.jit
def _pow2_normal(e):
    """2^e for int32 e in [-126, 127]: the float32 whose exponent field is e."""
    return ((e + 127) << 23).to(tl.float32, bitcast=True)


@triton.jit
def _pow2(e):
    """Exactly 2^e for int32 e in [-149, 127], as ``block.pow2`` builds it."""
    normal = tl.maximum(e, -126)
    return _pow2_normal(normal) * _pow2_normal(e - normal)


@triton.jit
def _unit(bits):
    """U[0,1) on the 2^-24 grid that ``torch.rand`` uses, from 32 random bits."""
    return (bits >> 8).to(tl.float32) * (1.0 / 16777216)


@triton.jit
def _uniform_at(seed, row, col, C):
    """The noise of the element at (row, col) of rows C long: number col % 4 of the
    Philox draw at counter row * ceil(C / 4) + col // 4."""
    r0, r1, r2, r3 = tl.randint4x(seed, row * ((C + 3) // 4) + (col >> 2))
    lane = col & 3
    return _unit(tl.where(lane == 0, r0, tl.where(lane == 1, r1, tl.where(lane == 2, r2, r3))))


@triton.jit
def _uniform_run(seed, row, start, C, BLOCK: tl.constexpr):
    """``_uniform_at`` for columns start..start+BLOCK-1 of a row (start a multiple of 4)
    with one Philox draw per four columns instead of one per column."""
    draws = row * ((C + 3) // 4) + start // 4 + tl.arange(0, BLOCK // 4)
    r0, r1, r2, r3 = tl.randint4x(seed, draws)
    # (BLOCK/4, 2, 2) holding r0, r1, r2, r3 in row-major order: columns 4g..4g+3
    return _unit(tl.reshape(tl.join(tl.join(r0, r2), tl.join(r1, r3)), (BLOCK,)))


@triton.jit
def _round(x, noise, amax_bits, BITS: tl.constexpr, STOCHASTIC: tl.constexpr):
    """Rounded values of x given its row's max key bits (``_key_bits``) and, when
    stochastic, its U[0,1) noise."""
    biased = amax_bits >> 23
    subnormal_e = tl.where(amax_bits >= (1 << 22), -127, -128)  # a >= 2^-127, else the floor
    e = tl.minimum(tl.where(biased > 0, biased - 127, subnormal_e), 127)
    k = (BITS - 2) - e
    half = k >> 1  # arithmetic shift: floor(k / 2), as torch.div(..., "floor")
    v = x * _pow2_normal(half) * _pow2_normal(k - half)  # both in [-64, 71]: see block._parts
    if STOCHASTIC:
        v = v + noise
    m = (v + _ROUND_MAGIC) - _ROUND_MAGIC  # to nearest, ties to even
    if STOCHASTIC:  # floor, without tl.floor: on CUDA it flushes subnormals to zero
        m = m - tl.where(m > v, 1.0, 0.0)
    limit = (1 << (BITS - 1)) * 1.0
    m = tl.minimum(tl.maximum(m, -limit), limit - 1.0)
    return tl.where(amax_bits < _INF_BITS, m * _pow2(-k), float("nan"))


@triton.jit
def _tile_kernel(
    x_ptr, seed_ptr, out_ptr, amax_ptr, R, C,
    BITS: tl.constexpr, STOCHASTIC: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)[:, None]
    cols = tl.arange(0, BLOCK_C)[None, :]
    mask = (rows < R) & (cols < C)
    offs = rows * C + cols
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    amax = tl.max(tl.where(mask, _key_bits(x), 0), axis=1)[:, None]
    noise = _uniform_at(tl.load(seed_ptr), rows, cols, C) if STOCHASTIC else 0.0
    tl.store(out_ptr + offs, _round(x, noise, amax, BITS, STOCHASTIC), mask=mask)
    tl.store(amax_ptr + rows, amax, mask=rows < R)


@triton.jit
def _row_max_kernel(x_ptr, amax_ptr, C, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < C
    x = tl.load(x_ptr + row * C + cols, mask=mask, other=0.0)
    tl.atomic_max(amax_ptr + row, tl.max(tl.where(mask, _key_bits(x), 0), axis=0))


@triton.jit
def _apply_kernel(
    x_ptr, seed_ptr, out_ptr, amax_ptr, C,
    BITS: tl.constexpr, STOCHASTIC: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0)
    start = tl.program_id(1) * BLOCK
    cols = start + tl.arange(0, BLOCK)
    mask = cols < C
    offs = row * C + cols
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    amax = tl.load(amax_ptr + row)
    noise = _uniform_run(tl.load(seed_ptr), row, start, C, BLOCK) if STOCHASTIC else 0.0
    tl.store(out_ptr + offs, _round(x, noise, amax, BITS, STOCHASTIC), mask=mask)


@triton.jit
def _noise_kernel(seed_ptr, out_ptr, N, C, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    noise = _uniform_at(tl.load(seed_ptr), offs // C, offs % C, C)
    tl.store(out_ptr + offs, noise, mask=offs < N)


def tile_shape(c: int) -> tuple[int, int]:
    """(rows, columns) one program of the one-pass kernel holds, for rows of c <= TILE."""
    block_c = triton.next_power_of_2(c)
    return max(1, TILE // block_c), block_c


def _cdiv(a: int, b: int) -> int:
    """Ceiling division on the host: ``triton.cdiv`` is a JIT function, and calling one from
    Python costs about 5 us, twice per rounding call (``benchmarks/host_overhead.py``)."""
    return -(-a // b)


def fits(rows: Tensor) -> bool:
    """Whether the kernels can take this tensor: int32 offsets and a grid's second axis."""
    return rows.numel() < 2**31 and _cdiv(rows.shape[1], CHUNK) < 65536


def uniform(seed: Tensor, shape: tuple[int, int]) -> Tensor:
    """The noise ``fake_quantize`` adds with this seed to rows of this (rows, columns) shape."""
    out = torch.empty(shape, dtype=torch.float32, device=seed.device)
    _noise_kernel[(_cdiv(out.numel(), CHUNK),)](seed, out, out.numel(), shape[1], BLOCK=CHUNK)
    return out


def fake_quantize(
    rows: Tensor,
    seed: Tensor | None,
    bits: int,
    shape: tuple[int, ...],
    block_shape: tuple[int, ...],
) -> tuple[Tensor, Tensor]:
    """(values shaped like the input, peak per row), as ``block._fake_quantize`` given the
    noise ``uniform(seed, rows.shape)``; ``seed`` (one int64 on rows' device) is None for
    round-to-nearest.

    The output is allocated in the input's shape (not a view of a row-shaped tensor),
    for the reason ``_fake_quantize`` gives. ``block_shape`` is not needed: the rows
    already say which elements share an exponent.
    """
    del block_shape
    rows = rows.contiguous()
    r, c = rows.shape
    out = torch.empty(shape, dtype=torch.float32, device=rows.device)
    stochastic = seed is not None
    key = seed if stochastic else rows  # a pointer the kernel never reads when not stochastic
    if c <= TILE:
        amax = torch.empty(r, dtype=torch.int32, device=rows.device)
        block_r, block_c = tile_shape(c)
        grid = (_cdiv(r, block_r),)
        _tile_kernel[grid](
            rows, key, out, amax, r, c, BITS=bits, STOCHASTIC=stochastic,
            BLOCK_R=block_r, BLOCK_C=block_c, enable_fp_fusion=False,
        )  # fmt: skip
    else:
        amax = torch.zeros(r, dtype=torch.int32, device=rows.device)  # atomic max starts at 0
        grid = (r, _cdiv(c, CHUNK))
        _row_max_kernel[grid](rows, amax, c, BLOCK=CHUNK)
        _apply_kernel[grid](
            rows, key, out, amax, c, BITS=bits, STOCHASTIC=stochastic, BLOCK=CHUNK,
            enable_fp_fusion=False,
        )  # fmt: skip
    return out, amax.view(torch.float32)
