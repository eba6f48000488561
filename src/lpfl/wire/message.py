"""Whole messages: a model's tensors to the bytes a client uploads, and back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from .codec import Encoded, decode_stacked, encode_stacked, encode_tensor
from .compression import compress, decompress
from .errors import WireError
from .format import WireFormat
from .frame import seal, unseal
from .header import Header
from .spec import TensorSpec


def encode(
    tensors: Mapping[str, Tensor], fmt: WireFormat, generator: torch.Generator | None = None
) -> bytes:
    """Serialize ``tensors`` (in order) as ``fmt`` says.

    With stochastic rounding, ``generator`` makes the message reproducible: tensors
    draw from it in order, exactly as ``block_quantize`` calls would.
    """
    return _message([encode_tensor(name, t, fmt, generator) for name, t in tensors.items()], fmt)


def encode_many(states: Sequence[Mapping[str, Tensor]], fmt: WireFormat) -> list[bytes | WireError]:
    """``encode(state, fmt)`` for every state, byte for byte, or the WireError it would raise.

    A round's client models share their tensors' names, shapes and device, so each
    tensor is encoded for all of them at once (``encode_stacked``). One client whose
    update cannot be sent gets its error in its place; the others are unaffected.
    Models that do not line up (sub-models of different widths), and stochastic
    rounding (whose noise would be drawn in another order), go one by one.
    """
    if fmt.rounding != "nearest" or not _aligned(states):
        return [_attempt(state, fmt) for state in states]
    columns = [_column(name, [s[name] for s in states], fmt) for name in states[0]]
    messages: list[bytes | WireError] = []
    for parts in zip(*columns, strict=True):
        error = next((p for p in parts if isinstance(p, WireError)), None)
        messages.append(error or _message(parts, fmt))  # type: ignore[arg-type]
    return messages


def _column(name: str, tensors: list[Tensor], fmt: WireFormat) -> list[Encoded | WireError]:
    """One tensor of every state; what no state can send (a dtype the wire lacks) fails all."""
    try:
        return encode_stacked(name, torch.stack(tensors), fmt, None)
    except WireError as exc:
        return [exc] * len(tensors)


def _attempt(state: Mapping[str, Tensor], fmt: WireFormat) -> bytes | WireError:
    try:
        return encode(state, fmt)
    except WireError as exc:
        return exc


def _aligned(states: Sequence[Mapping[str, Tensor]]) -> bool:
    """Whether the states list the same tensors, in the same order, alike in shape,
    dtype and device."""
    if len(states) < 2:
        return False
    first = [(n, t.shape, t.dtype, t.device) for n, t in states[0].items()]
    return all([(n, t.shape, t.dtype, t.device) for n, t in s.items()] == first for s in states)


def _message(parts: Sequence[Encoded], fmt: WireFormat) -> bytes:
    header = Header(fmt.compression, tuple(spec for spec, _ in parts))
    body = b"".join(chunk for _, chunks in parts for chunk in chunks)
    return seal(header.to_bytes(), compress(body, fmt.compression))


def decode(
    payload: bytes, expected: Mapping[str, tuple[int, ...]] | None = None
) -> dict[str, Tensor]:
    """Rebuild the tensors of a message; floats come back as float32.

    ``expected`` (names to shapes, e.g. from the server's own model) is checked
    before any value is read, so a message for another model is refused cheaply.
    Raises WireError, never returns a partial or unchecked result.
    """
    (tensors,) = decode_many([payload], [expected])
    if isinstance(tensors, WireError):
        raise tensors
    return tensors


def decode_many(
    payloads: Sequence[bytes], expected: Sequence[Mapping[str, tuple[int, ...]] | None]
) -> list[dict[str, Tensor] | WireError]:
    """``decode`` for each payload (with its own ``expected``), or the WireError it would raise.

    Every message is unsealed and checked on its own; those with the same layout then
    have each tensor's values decoded together (``decode_stacked``). Tensors of one
    layout are slices of shared stacks: read them, do not write to them.
    """
    results: list[dict[str, Tensor] | WireError] = []
    layouts: dict[tuple[TensorSpec, ...], list[int]] = {}
    bodies: dict[int, memoryview] = {}
    for i, (payload, shapes) in enumerate(zip(payloads, expected, strict=True)):
        try:
            header, bodies[i] = _open(payload, shapes)
        except WireError as exc:
            results.append(exc)
            continue
        results.append({})
        layouts.setdefault(header.tensors, []).append(i)
    for specs, members in layouts.items():
        offset = 0
        for spec in specs:
            size = spec.body_size
            column = decode_stacked(spec, [bodies[i][offset : offset + size] for i in members])
            for i, tensor in zip(members, column, strict=True):
                decoded = results[i]
                if isinstance(decoded, WireError):  # its first bad tensor already said why
                    continue
                if isinstance(tensor, WireError):
                    results[i] = tensor
                else:
                    decoded[spec.name] = tensor
            offset += size
    return results


def _open(
    payload: bytes, expected: Mapping[str, tuple[int, ...]] | None
) -> tuple[Header, memoryview]:
    """The header and raw body of one message, every check but the values' done."""
    header_bytes, packed_body = unseal(payload)
    header = Header.from_bytes(header_bytes)
    if expected is not None:
        _check_expected(header.tensors, expected)
    return header, decompress(packed_body, header.compression, header.body_size)


def _check_expected(specs: tuple[TensorSpec, ...], expected: Mapping[str, tuple[int, ...]]) -> None:
    got = {spec.name: spec.shape for spec in specs}
    missing = [name for name in expected if name not in got]
    unexpected = [name for name in got if name not in expected]
    if missing or unexpected:
        raise WireError(f"tensor names do not match: missing {missing}, unexpected {unexpected}")
    for name, shape in got.items():
        if shape != tuple(expected[name]):
            raise WireError(
                f"shape mismatch for {name!r}: got {shape}, expected {tuple(expected[name])}"
            )


def fp32_bytes(tensors: Mapping[str, Tensor]) -> int:
    """Bytes of the same tensors sent as raw float32 values: the baseline every ratio uses."""
    return sum(4 * tensor.numel() for tensor in tensors.values())
