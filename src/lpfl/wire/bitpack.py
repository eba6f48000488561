"""Dense packing of W-bit signed integers, W = 2..16, with whole-array numpy operations.

Eight W-bit values fill exactly W bytes, so values travel in groups of eight: each
group is assembled in a 128-bit little-endian word (two uint64 lanes) and its first
W bytes are kept. One loop over the eight positions in a group (never over the
values) serves every W; when W is 8 or 16 the values already fill whole bytes and
are sent as they are.
"""

from __future__ import annotations

import numpy as np

_GROUP = 8  # values per group: 8 * W bits is a whole number (W) of bytes
_LANE_BITS = 64
_LANES = 2  # 8 values of up to 16 bits fit in two 64-bit lanes


def packed_size(count: int, bits: int) -> int:
    """Bytes taken by ``count`` values of ``bits`` bits: the tail group is cut to its last byte."""
    return (count * bits + 7) // 8


def _unsigned_dtype(bits: int) -> np.dtype:
    return np.dtype("<u1" if bits <= 8 else "<u2")


def _signed_dtype(bits: int) -> np.dtype:
    return np.dtype("<i1" if bits <= 8 else "<i2")


def _place(position: int, bits: int) -> tuple[int, int, bool]:
    """Where value ``position`` of a group sits: (lane, bit offset in it, spills into next lane)."""
    lane, offset = divmod(position * bits, _LANE_BITS)
    return lane, offset, offset + bits > _LANE_BITS


def pack_signed(values: np.ndarray, bits: int) -> bytes:
    """Pack signed values in [-2^(W-1), 2^(W-1)-1] at exactly ``bits`` bits each.

    Values are offset by 2^(W-1) so that every one is a plain W-bit unsigned number;
    the addition wraps in the unsigned view, which is the same as adding in a wider type.
    """
    flat = np.ascontiguousarray(values, dtype=_signed_dtype(bits)).reshape(-1)
    unsigned = flat.view(_unsigned_dtype(bits)) + (1 << (bits - 1))
    if bits == 8 * unsigned.itemsize:
        return unsigned.tobytes()
    count = unsigned.size
    groups = -(-count // _GROUP)
    padded = np.zeros(groups * _GROUP, unsigned.dtype)
    padded[:count] = unsigned
    columns = padded.reshape(groups, _GROUP)
    words = np.zeros((groups, _LANES), "<u8")
    for position in range(_GROUP):
        lane, offset, spills = _place(position, bits)
        column = columns[:, position].astype(np.uint64)
        words[:, lane] |= column << offset
        if spills:
            words[:, lane + 1] |= column >> (_LANE_BITS - offset)
    return words.view(np.uint8)[:, :bits].tobytes()[: packed_size(count, bits)]


def unpack_signed(data: bytes | memoryview, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_signed`: ``count`` signed values (int8 up to 8 bits, else int16).

    ``data`` must hold exactly ``packed_size(count, bits)`` bytes; the caller has
    already checked the body length against the header. Each group's lanes are read
    in place through unaligned uint64 views W bytes apart, so the packed bytes are
    copied once (into a zero-padded buffer) and never regrouped.
    """
    unsigned_dtype = _unsigned_dtype(bits)
    if bits == 8 * unsigned_dtype.itemsize:
        unsigned = np.frombuffer(data, unsigned_dtype, count)
    else:
        groups = -(-count // _GROUP)
        padded = np.zeros(groups * bits + _LANES * 8, np.uint8)
        padded[: packed_size(count, bits)] = np.frombuffer(data, np.uint8)
        lanes = [np.ndarray((groups,), "<u8", padded, 8 * lane, (bits,)) for lane in range(_LANES)]
        mask = (1 << bits) - 1
        grouped = np.empty((groups, _GROUP), unsigned_dtype)
        for position in range(_GROUP):
            lane, offset, spills = _place(position, bits)
            value = lanes[lane] >> offset
            if spills:
                value |= lanes[lane + 1] << (_LANE_BITS - offset)
            value &= mask
            grouped[:, position] = value
        unsigned = grouped.reshape(-1)[:count]
    signed = unsigned - unsigned_dtype.type(1 << (bits - 1))
    return signed.view(_signed_dtype(bits))
