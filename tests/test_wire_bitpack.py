"""lpfl.wire.bitpack: every W from 2 to 16 packs to exactly W bits per value and back."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lpfl.wire.bitpack import pack_signed, packed_size, unpack_signed


@st.composite
def _values(draw) -> tuple[int, np.ndarray]:
    bits = draw(st.integers(2, 16))
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    count = draw(st.integers(0, 70))
    edges = st.sampled_from([lo, hi, 0, -1])
    ints = draw(st.lists(st.integers(lo, hi) | edges, min_size=count, max_size=count))
    return bits, np.array(ints, dtype=np.int8 if bits <= 8 else np.int16)


@settings(max_examples=300, deadline=None)
@given(_values())
def test_pack_unpack_round_trip_at_exact_width(case):
    bits, values = case
    packed = pack_signed(values, bits)
    assert len(packed) == packed_size(values.size, bits) == -(-values.size * bits // 8)
    got = unpack_signed(packed, bits, values.size)
    assert got.dtype == values.dtype and np.array_equal(got, values)


@pytest.mark.parametrize("bits", range(2, 17))
def test_large_arrays_and_known_layout(bits):
    rng = np.random.default_rng(bits)
    values = rng.integers(-(2 ** (bits - 1)), 2 ** (bits - 1), 100_003)
    values = values.astype(np.int8 if bits <= 8 else np.int16)
    assert np.array_equal(unpack_signed(pack_signed(values, bits), bits, values.size), values)
    # Offset binary, least significant bits first: -2^(W-1) is all zeros, 2^(W-1)-1 all ones.
    ends = np.array([-(2 ** (bits - 1))] * 8 + [2 ** (bits - 1) - 1] * 8, dtype=values.dtype)
    assert pack_signed(ends, bits) == bytes(bits) + b"\xff" * bits
