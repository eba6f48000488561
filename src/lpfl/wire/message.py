"""Whole messages: a model's tensors to the bytes a client uploads, and back."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from .codec import decode_tensor, encode_tensor
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
    specs: list[TensorSpec] = []
    chunks: list[bytes] = []
    for name, tensor in tensors.items():
        spec, tensor_chunks = encode_tensor(name, tensor, fmt, generator)
        specs.append(spec)
        chunks.extend(tensor_chunks)
    header = Header(fmt.compression, tuple(specs))
    return seal(header.to_bytes(), compress(b"".join(chunks), fmt.compression))


def decode(
    payload: bytes, expected: Mapping[str, tuple[int, ...]] | None = None
) -> dict[str, Tensor]:
    """Rebuild the tensors of a message; floats come back as float32.

    ``expected`` (names to shapes, e.g. from the server's own model) is checked
    before any value is read, so a message for another model is refused cheaply.
    Raises WireError, never returns a partial or unchecked result.
    """
    header_bytes, packed_body = unseal(payload)
    header = Header.from_bytes(header_bytes)
    if expected is not None:
        _check_expected(header.tensors, expected)
    body = decompress(packed_body, header.compression, header.body_size)
    tensors: dict[str, Tensor] = {}
    offset = 0
    for spec in header.tensors:
        size = spec.body_size
        tensors[spec.name] = decode_tensor(spec, body[offset : offset + size])
        offset += size
    return tensors


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
