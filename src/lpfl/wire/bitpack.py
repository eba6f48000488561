"""Dense packing of W-bit signed integers, W = 2..16, with whole-array numpy operations.

Eight W-bit values fill exactly W bytes, so values travel in groups of eight. A group
starts as its eight values in 8- or 16-bit slots (one or two uint64 lanes) and is
squeezed SWAR-style: each step merges neighbouring slots by shifting the upper one's
bits down against the lower one's, so log2(8) = 3 steps of a few whole-array
operations leave the group's 8W bits contiguous at the bottom of its lanes. Unpacking
runs the same steps backwards. No loop ever runs over values, and W = 8 or 16 needs
no squeezing at all.
"""

from __future__ import annotations

from functools import cache
from typing import NamedTuple

import numpy as np

_GROUP = 8  # values per group: 8 * W bits is a whole number (W) of bytes
_LANE = 64  # bits per uint64 lane


def packed_size(count: int, bits: int) -> int:
    """Bytes taken by ``count`` values of ``bits`` bits: the tail group is cut to its last byte."""
    return (count * bits + 7) // 8


def _unsigned_dtype(bits: int) -> np.dtype:
    return np.dtype("<u1" if bits <= 8 else "<u2")


def _signed_dtype(bits: int) -> np.dtype:
    return np.dtype("<i1" if bits <= 8 else "<i2")


def _every(low_bits: int, period: int) -> int:
    """Lane mask with the low ``low_bits`` bits of every ``period``-bit unit set."""
    unit = (1 << low_bits) - 1
    return sum(unit << shift for shift in range(0, _LANE, period))


class _Step(NamedTuple):
    """One merge of unit pairs: units of u bits, each holding n values (n*W bits) at its bottom."""

    lower: np.uint64  # the lower unit of every pair
    used: np.uint64  # the n*W low bits of every pair: where the lower unit's values sit
    width: np.uint64  # n*W
    shift: np.uint64  # u - n*W: how far the upper unit's values move down onto the lower's


@cache
def _merge_steps(bits: int) -> tuple[_Step, ...]:
    """The squeeze for W = ``bits``, narrowest units first (8-bit slots, or 16-bit above W=8)."""
    slot_bits = 8 * _unsigned_dtype(bits).itemsize
    steps = []
    for u in (8, 16, 32):
        if u >= slot_bits:
            width = (u // slot_bits) * bits
            masks = (_every(u, 2 * u), _every(width, 2 * u))
            steps.append(_Step(*map(np.uint64, (*masks, width, u - width))))
    return tuple(steps)


def pack_signed(values: np.ndarray, bits: int) -> bytes:
    """Pack signed values in [-2^(W-1), 2^(W-1)-1] at exactly ``bits`` bits each.

    Values are offset by 2^(W-1) so that every one is a plain W-bit unsigned number;
    the addition wraps in the unsigned view, which is the same as adding in a wider type.
    """
    flat = np.ascontiguousarray(values, dtype=_signed_dtype(bits)).reshape(-1)
    unsigned_dtype = _unsigned_dtype(bits)
    count, slot_bits = flat.size, 8 * unsigned_dtype.itemsize
    if bits == slot_bits:
        return (flat.view(unsigned_dtype) + (1 << (bits - 1))).tobytes()
    groups = -(-count // _GROUP)
    padded = np.zeros(groups * _GROUP, unsigned_dtype)
    np.add(flat.view(unsigned_dtype), 1 << (bits - 1), out=padded[:count])
    lanes = padded.view("<u8").reshape(groups, unsigned_dtype.itemsize)
    for step in _merge_steps(bits):
        lanes = (lanes & step.lower) | ((lanes & ~step.lower) >> step.shift)
    if lanes.shape[1] == 2:  # 4W bits in each lane: append the high lane's to the low one's
        half = 4 * bits
        lanes = np.stack(
            (
                lanes[:, 0] | (lanes[:, 1] << np.uint64(half)),
                lanes[:, 1] >> np.uint64(_LANE - half),
            ),
            axis=1,
        )
    packed = np.ascontiguousarray(lanes, "<u8").view(np.uint8)[:, :bits]
    return packed.tobytes()[: packed_size(count, bits)]


def unpack_signed(data: bytes | memoryview, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_signed`: ``count`` signed values (int8 up to 8 bits, else int16).

    ``data`` must hold exactly ``packed_size(count, bits)`` bytes; the caller has
    already checked the body length against the header. Each group's lanes are read
    in place through unaligned uint64 views W bytes apart; the bits they pick up from
    the next group are masked away by the first split step.
    """
    unsigned_dtype = _unsigned_dtype(bits)
    slot_bits = 8 * unsigned_dtype.itemsize
    if bits == slot_bits:
        unsigned = np.frombuffer(data, unsigned_dtype, count)
    else:
        groups = -(-count // _GROUP)
        padded = np.zeros(groups * bits + 16, np.uint8)  # room for the last group's 16-byte read
        padded[: packed_size(count, bits)] = np.frombuffer(data, np.uint8)
        first = np.ndarray((groups, 1), "<u8", padded, 0, (bits, 8))
        if slot_bits == 8:
            lanes = first
        else:  # split the group's 8W bits into two lanes of 4W
            second = np.ndarray((groups, 1), "<u8", padded, 8, (bits, 8))
            half = 4 * bits
            upper = (first >> np.uint64(half)) | (second << np.uint64(_LANE - half))
            lanes = np.concatenate((first, upper), axis=1)
        for step in reversed(_merge_steps(bits)):
            lanes = (lanes & step.used) | ((lanes & (step.used << step.width)) << step.shift)
        unsigned = np.ascontiguousarray(lanes, "<u8").view(unsigned_dtype).reshape(-1)[:count]
    signed = unsigned - unsigned_dtype.type(1 << (bits - 1))
    return signed.view(_signed_dtype(bits))
