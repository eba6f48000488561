"""lpfl.wire: exact round trips, true W-bit sizes, and refusal of every message it cannot trust."""

from __future__ import annotations

import json
import lzma
import math
import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lpfl.models import build_model
from lpfl.quant import BLOCK_MODES, block_decompose, block_quantize
from lpfl.wire import WireError, WireFormat, decode, decode_many, encode, encode_many, fp32_bytes
from lpfl.wire.frame import OVERHEAD, seal

ALL_BITS = [*range(2, 17), 32]
COMPRESSIONS = ["none", "zlib", "lzma"]
# Zeros, the smallest normal, subnormals, huge values and the float32 maximum, both signs.
EDGE_VALUES = [0.0, 1e-38, 1e-40, 1e-45, 1e38, 3.4028235e38, -1e-38, -1e-45, -1e38, -3.4e38]


def _tensors(max_magnitude: float | None = None) -> st.SearchStrategy[dict[str, torch.Tensor]]:
    finite = st.floats(
        min_value=-max_magnitude if max_magnitude else None,
        max_value=max_magnitude,
        width=32,
        allow_nan=False,
        allow_infinity=False,
    )
    edges = st.sampled_from(
        [v for v in EDGE_VALUES if not max_magnitude or abs(v) <= max_magnitude]
    )
    shape = st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple)
    array = shape.flatmap(lambda s: arrays(np.float32, s, elements=finite | edges))
    return st.lists(array, min_size=1, max_size=3).map(
        lambda xs: {f"layer{i}.weight": torch.from_numpy(x) for i, x in enumerate(xs)}
    )


def _shapes(tensors: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in tensors.items()}


def _expected(tensors, fmt: WireFormat, seed: int) -> dict[str, torch.Tensor]:
    """What the receiver must get: block_quantize drawing from the same generator, in order."""
    g = torch.Generator().manual_seed(seed)
    return {
        name: block_quantize(t, fmt.bits, fmt.block, fmt.rounding, g).float()
        for name, t in tensors.items()
    }


def _assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert list(got) == list(want), "names and order must survive the trip"
    for name, t in want.items():
        assert got[name].dtype == t.dtype and torch.equal(got[name], t), name


@settings(max_examples=80, deadline=None)
@given(
    tensors=_tensors(),
    bits=st.sampled_from(ALL_BITS),
    block=st.sampled_from(BLOCK_MODES),
    rounding=st.sampled_from(["nearest", "stochastic"]),
    compression=st.sampled_from(COMPRESSIONS),
    seed=st.integers(0, 2**31),
)
def test_round_trip_is_bit_identical_to_block_quantize(
    tensors, bits, block, rounding, compression, seed
):
    fmt = WireFormat(bits, block, rounding, compression=compression)
    payload = encode(tensors, fmt, torch.Generator().manual_seed(seed))
    _assert_same(decode(payload, _shapes(tensors)), _expected(tensors, fmt, seed))


@settings(max_examples=30, deadline=None)
@given(tensors=_tensors(max_magnitude=65504.0), compression=st.sampled_from(COMPRESSIONS))
def test_float16_option_sends_half_floats(tensors, compression):
    fmt = WireFormat(float_dtype="float16", compression=compression)
    got = decode(encode(tensors, fmt))
    _assert_same(got, {name: t.half().float() for name, t in tensors.items()})


@pytest.mark.parametrize("bits", [2, 4, 6, 8, 11, 16])
@pytest.mark.parametrize("block", BLOCK_MODES)
def test_weights_already_on_the_grid_travel_exactly(bits, block):
    # Training leaves weights on the BFP grid (stochastic rounding); sending them with
    # nearest rounding must reproduce them, so the wire adds no error of its own. That
    # includes blocks holding the mantissa -2^(W-1), common below 6 bits.
    g = torch.Generator().manual_seed(0)
    for raw in (torch.randn(16, 8, 3, 3, generator=g), torch.randn(10, 37, generator=g)):
        q = block_decompose(raw, bits, block, "stochastic", g)
        trained = q.dequantize()
        got = decode(encode({"w": trained}, WireFormat(bits, block, "nearest")))["w"]
        assert torch.equal(got, trained)
    extreme = block_quantize(torch.tensor([-1.99, 0.25]), 4, "tensor", "nearest")
    assert extreme.tolist() == [-2.0, 0.25]
    assert torch.equal(decode(encode({"w": extreme}, WireFormat(4, "tensor")))["w"], extreme)


def test_int_zero_dim_and_non_contiguous_tensors_round_trip():
    g = torch.Generator().manual_seed(1)
    base = torch.randn(12, 10, generator=g)
    tensors = {
        "steps": torch.tensor(7, dtype=torch.int64),
        "index": torch.arange(-5, 6, dtype=torch.int32)[::2],
        "mask": torch.rand(3, 5, generator=g) > 0.5,
        "codes": torch.randint(0, 255, (9,), dtype=torch.uint8, generator=g),
        "transposed": base.t(),
        "strided": base[:, ::3],
        "scalar": torch.tensor(0.3),
        "empty": torch.zeros(0, 4),
    }
    assert not tensors["transposed"].is_contiguous()
    for fmt in (WireFormat(), WireFormat(bits=5, block="B")):
        got = decode(encode(tensors, fmt))
        # block_quantize cannot take an empty tensor; the wire sends it raw (it has no values).
        floats = {n: t for n, t in tensors.items() if t.is_floating_point() and t.numel()}
        want = {**tensors, **_expected(floats, fmt, seed=0)}
        _assert_same(got, want)


def _prefix(payload: bytes) -> tuple[int, int]:
    """(header length, body length) from the fixed prefix."""
    _, _, header_size, body_size = struct.unpack_from("<4sBIQ", payload)
    return header_size, body_size


@pytest.mark.parametrize(("bits", "mantissa_bytes"), [(6, 600), (8, 800), (3, 300), (12, 1200)])
def test_mantissas_take_exactly_w_bits(bits, mantissa_bytes):
    tensors = {"w": torch.randn(8, 100), "b": torch.randn(7)}  # 800 + 7 values
    payload = encode(tensors, WireFormat(bits, "B"))
    header_size, body_size = _prefix(payload)
    bias_bytes = math.ceil(7 * bits / 8)
    assert body_size == (8 + mantissa_bytes) + (1 + bias_bytes)  # exponents: 8 rows, 1 bias
    assert len(payload) == OVERHEAD + header_size + body_size


def test_convnet_sizes_and_header_overhead():
    state = build_model("convnet", 3, 32, 10).state_dict()
    payload = encode(state, WireFormat(8, "B"))
    header_size, body_size = _prefix(payload)
    n = sum(t.numel() for t in state.values())
    blocks = sum(t.shape[0] if t.ndim > 1 else 1 for t in state.values())
    assert body_size == n + blocks
    assert (header_size + OVERHEAD) / len(payload) < 0.005
    assert len(payload) / fp32_bytes(state) <= 0.255
    assert len(encode(state, WireFormat(6, "B"))) / fp32_bytes(state) <= 0.193


@pytest.mark.parametrize("bits", [2, 8, 9, 16])
def test_every_exponent_byte_decodes_to_finite_values(bits):
    # A signed byte cannot hold an out-of-range exponent: e in [-128, 127] with the
    # largest mantissas still gives finite float32, so no exponent needs refusing.
    top = 2 ** (bits - 1) - 1
    spec = ["x", [256, 2], "float32", f"bfp{bits}/B"]
    exponents = np.arange(-128, 128, dtype=np.int8).tobytes()
    mantissas = (b"\xff" * 256 * 2 * bits)[: 256 * 2 * bits // 8]  # all ones: offset top value
    header = json.dumps({"compression": "none", "tensors": [spec]}).encode()
    got = decode(seal(header, exponents + mantissas))["x"]
    want = top * torch.exp2(torch.arange(-128, 128, dtype=torch.float64) - (bits - 2))
    assert torch.isfinite(got).all()
    assert torch.equal(got[:, 0].double(), want) and torch.equal(got[:, 1].double(), want)


# ---- refusals -----------------------------------------------------------------------------

_STATE = {"w": torch.randn(4, 3, 3, 3), "b": torch.randn(4), "n": torch.tensor(3)}


@pytest.fixture
def payload() -> bytes:
    return encode(_STATE, WireFormat(6, "B"))


def _message(entries: object, body: bytes, compression: str = "none") -> bytes:
    header = json.dumps({"compression": compression, "tensors": entries}).encode()
    return seal(header, body)


@pytest.mark.parametrize("cut", [0, 3, 10, OVERHEAD - 1, -1, -40])
def test_truncated_payload(payload, cut):
    with pytest.raises(WireError, match="truncated"):
        decode(payload[:cut])


def test_trailing_bytes(payload):
    with pytest.raises(WireError, match="unexpected bytes after the end"):
        decode(payload + b"\0")


def test_bad_magic(payload):
    with pytest.raises(WireError, match="bad magic"):
        decode(b"LPFX" + payload[4:])


def test_unsupported_version(payload):
    with pytest.raises(WireError, match="unsupported wire format version 2"):
        decode(payload[:4] + bytes([2]) + payload[5:])


@pytest.mark.parametrize("where", [OVERHEAD, -30, -5, -1])
def test_corruption_fails_the_checksum(payload, where):
    corrupted = bytearray(payload)
    corrupted[where] ^= 0x10
    with pytest.raises(WireError, match="checksum mismatch"):
        decode(bytes(corrupted))


_INT8 = b'["w", [], "int8", "raw"]'


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[]", "expected an object"),
        (b'{"tensors": []}', "expected an object"),
        (b'{"compression": "gzip", "tensors": []}', "unknown compression"),
        (b'{"compression": "none", "tensors": {}}', "not a list"),
        (b'{"compression": "none", "tensors": [["w", [2]]]}', "not \\[name, shape"),
        (b'{"compression": "none", "tensors": [[1, [2], "float32", "raw"]]}', "name"),
        (b'{"compression": "none", "tensors": [["w", [-2], "float32", "raw"]]}', "shape"),
        (b'{"compression": "none", "tensors": [["w", [true], "float32", "raw"]]}', "shape"),
        (b'{"compression": "none", "tensors": [["w", [2], "complex64", "raw"]]}', "unknown dtype"),
        (b'{"compression": "none", "tensors": [["w", [2], "float16", "raw"]]}', "float16"),
        (b'{"compression": "none", "tensors": [["w", [2], "float32", "zip"]]}', "unknown encod"),
        (b'{"compression": "none", "tensors": [["w", [2], "float32", 8]]}', "encoding 8"),
        (b'{"compression": "none", "tensors": [["w", [2], "float32", "bfp17/B"]]}', "unsupported"),
        (b'{"compression": "none", "tensors": [["w", [2], "float32", "bfp8/C"]]}', "unsupported"),
        (b'{"compression": "none", "tensors": [["w", [2], "int64", "bfp8/B"]]}', "claims dtype"),
        (b'{"compression": "none", "tensors": [%s, %s]}' % (_INT8, _INT8), "duplicate"),
    ],
)
def test_malformed_header(header, reason):
    with pytest.raises(WireError, match=f"malformed header.*{reason}"):
        decode(seal(header, b"\0\0"))


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("delta", [-1, 1])
def test_body_length_inconsistent_with_header(compression, delta):
    entries = [["w", [10], "float32", "bfp8/B"]]  # 1 exponent + 10 mantissa bytes
    body = bytes(11 + delta)
    packed = {"none": body, "zlib": zlib.compress(body), "lzma": lzma.compress(body)}
    with pytest.raises(WireError, match="inconsistent with the header"):
        decode(_message(entries, packed[compression], compression))


@pytest.mark.parametrize("compression", ["zlib", "lzma"])
def test_broken_compressed_stream(compression):
    entries = [["w", [10], "int8", "raw"]]
    with pytest.raises(WireError, match=f"does not decompress as {compression}"):
        decode(_message(entries, b"definitely not compressed", compression))


def test_compressed_body_with_trailing_data():
    entries = [["w", [10], "int8", "raw"]]
    with pytest.raises(WireError, match="not exactly one complete stream"):
        decode(_message(entries, zlib.compress(bytes(10)) + b"extra", "zlib"))


def test_names_must_match_expected(payload):
    with pytest.raises(WireError, match=r"names do not match: missing \['v'\], unexpected \['n'\]"):
        decode(payload, {"w": (4, 3, 3, 3), "b": (4,), "v": ()})


def test_shapes_must_match_expected(payload):
    with pytest.raises(WireError, match=r"shape mismatch for 'w': got \(4, 3, 3, 3\)"):
        decode(payload, {"w": (4, 3, 9), "b": (4,), "n": ()})
    decode(payload, {name: t.shape for name, t in _STATE.items()})  # torch.Size is fine


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("wire", ["float32", "float16"])
def test_non_finite_raw_floats_are_refused(bad, wire):
    values = np.array([1.0, bad, 2.0], dtype=wire)
    encoding = "raw" if wire == "float32" else "float16"
    with pytest.raises(WireError, match="'x' holds NaN or Inf"):
        decode(_message([["x", [3], "float32", encoding]], values.tobytes()))


@pytest.mark.parametrize(
    "fmt", [WireFormat(), WireFormat(bits=8), WireFormat(float_dtype="float16")]
)
def test_encoder_refuses_non_finite_values(fmt):
    with pytest.raises(WireError, match="NaN or Inf"):
        encode({"x": torch.tensor([1.0, math.nan])}, fmt)


def test_encoder_refuses_float16_overflow():
    with pytest.raises(WireError, match="as float16: it holds NaN or Inf"):
        encode({"x": torch.tensor([1e5])}, WireFormat(float_dtype="float16"))


def test_encoder_refuses_unsupported_dtypes_and_names():
    with pytest.raises(WireError, match=r"dtype torch\.complex64 is not supported"):
        encode({"z": torch.zeros(2, dtype=torch.complex64)}, WireFormat())
    with pytest.raises(WireError, match="names must be strings"):
        encode({3: torch.zeros(2)}, WireFormat())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bits": 1},
        {"block": "C"},
        {"rounding": "up"},
        {"float_dtype": "bfloat16"},
        {"compression": "gzip"},
    ],
)
def test_invalid_formats(kwargs):
    with pytest.raises(ValueError):
        WireFormat(**kwargs)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_absurd_declared_sizes_are_refused(compression):
    entries = [["w", [10**30], "int8", "raw"]]
    body = {"none": b"", "zlib": zlib.compress(b""), "lzma": lzma.compress(b"")}[compression]
    with pytest.raises(WireError, match="inconsistent with the header"):
        decode(_message(entries, body, compression))


def _round_of_clients(k: int = 4) -> list[dict[str, torch.Tensor]]:
    """k client models alike in layout, with an int buffer, a scalar and an empty tensor."""
    g = torch.Generator().manual_seed(11)
    model = build_model("convnet", 1, 28, 10, width=0.125).state_dict()
    states = []
    for _ in range(k):
        state = {n: t + 0.01 * torch.randn(t.shape, generator=g) for n, t in model.items()}
        state |= {
            "steps": torch.tensor(7, dtype=torch.int64),
            "scale": torch.tensor(0.3),
            "empty": torch.zeros(0, 4),
        }
        states.append(state)
    return states


@pytest.mark.parametrize(
    "fmt",
    [
        WireFormat(bits=8, block="BC"),
        WireFormat(bits=6, block="B"),
        WireFormat(bits=5, block="tensor", compression="zlib"),
        WireFormat(),
        WireFormat(float_dtype="float16"),
    ],
)
def test_encoding_many_clients_at_once_gives_each_its_own_bytes(fmt, monkeypatch):
    import lpfl.wire.message as message

    states = _round_of_clients()
    alone = [encode(s, fmt) for s in states]
    calls = []
    stacked = message.encode_stacked
    monkeypatch.setattr(
        message, "encode_stacked", lambda n, t, *a: calls.append(len(t)) or stacked(n, t, *a)
    )
    assert encode_many(states, fmt) == alone
    assert calls == [len(states)] * len(states[0]), "one call per tensor, for all clients"


def test_a_client_that_cannot_be_sent_gets_its_own_error():
    states = _round_of_clients()
    states[1]["features.0.weight"][0, 0, 0, 0] = math.nan
    states[2]["scale"] = torch.tensor(1e6)  # overflows float16
    for fmt in (WireFormat(bits=8), WireFormat(float_dtype="float16")):
        got = encode_many(states, fmt)
        for state, result in zip(states, got, strict=True):
            try:
                expected: bytes | str = encode(state, fmt)
            except WireError as exc:
                expected = str(exc)
            assert (result if isinstance(result, bytes) else str(result)) == expected
        assert isinstance(got[1], WireError) and isinstance(got[0], bytes)


def test_models_that_do_not_line_up_and_stochastic_rounding_go_one_by_one():
    states = _round_of_clients(3)
    states[2]["features.0.weight"] = states[2]["features.0.weight"][:1]  # a narrower model
    fmt = WireFormat(bits=8)
    assert encode_many(states, fmt) == [encode(s, fmt) for s in states]
    stochastic = WireFormat(bits=4, rounding="stochastic")
    same = _round_of_clients(2)
    torch.manual_seed(3)
    many = encode_many(same, stochastic)
    torch.manual_seed(3)
    assert many == [encode(s, stochastic) for s in same]


def test_a_tensor_no_client_can_send_fails_each_client_as_encode_would():
    states = [{"w": torch.ones(3), "z": torch.zeros(2, dtype=torch.complex64)} for _ in range(3)]
    got = encode_many(states, WireFormat(bits=8))
    with pytest.raises(WireError) as alone:
        encode(states[0], WireFormat(bits=8))
    assert [str(e) for e in got] == [str(alone.value)] * 3


def _decoded_alone(payload: bytes, expected=None) -> dict[str, torch.Tensor] | str:
    try:
        return decode(payload, expected)
    except WireError as exc:
        return str(exc)


@pytest.mark.parametrize(
    "fmt", [WireFormat(bits=8), WireFormat(bits=6, block="B"), WireFormat(float_dtype="float16")]
)
def test_decoding_many_messages_at_once_gives_each_its_own_tensors(fmt, monkeypatch):
    import lpfl.wire.message as message

    states = _round_of_clients(4)
    narrow = dict(states[3]) | {"features.0.weight": states[3]["features.0.weight"][:1]}
    payloads = [encode(s, fmt) for s in states[:3]] + [encode(narrow, fmt)]
    entry = [["x", [2], "float32", "raw"]]
    fine, nan = (_message(entry, np.array([1.0, v], dtype="<f4").tobytes()) for v in (2, math.nan))
    payloads += [payloads[0][:-10], fine, nan, fine]
    calls = []
    stacked = message.decode_stacked
    monkeypatch.setattr(
        message, "decode_stacked", lambda spec, ds: calls.append(len(ds)) or stacked(spec, ds)
    )
    got = decode_many(payloads, [None] * len(payloads))
    made = list(calls)  # what decode_many did; decoding each alone below adds to the spy
    for payload, result in zip(payloads, got, strict=True):
        alone = _decoded_alone(payload)
        if isinstance(alone, str):
            assert isinstance(result, WireError) and str(result) == alone
        else:
            assert list(result) == list(alone)
            assert all(torch.equal(result[n], alone[n]) for n in alone)
    layout = len(states[0])
    assert made[:layout] == [3] * layout, "the three aligned messages decode together"
    assert made[-1] == 3, "and the three raw ones, the one holding NaN refused alone"
    assert isinstance(got[-2], WireError) and isinstance(got[-1], dict)
