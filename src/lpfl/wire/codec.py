"""One tensor to header entry + body bytes, and back.

Floating tensors are quantized with the same ``block_decompose`` that training
uses, so what arrives is exactly what ``block_quantize`` would have produced;
everything else (and every float at full precision) travels as plain values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ..quant import BlockQuantized, block_decompose
from ..quant.block import non_finite
from ..quant.finite import finite_slices
from .bitpack import pack_signed, unpack_signed
from .dtypes import DECODED_FLOAT, dtype_name, numpy_dtype, torch_dtype
from .errors import WireError
from .format import WireFormat
from .spec import HALF, RAW, TensorSpec

Encoded = tuple[TensorSpec, list[bytes]]


def encode_tensor(
    name: str, tensor: Tensor, fmt: WireFormat, generator: torch.Generator | None
) -> Encoded:
    """Header entry and body chunks for one tensor (raises WireError if it cannot be sent)."""
    (encoded,) = encode_stacked(name, tensor.unsqueeze(0), fmt, generator)
    if isinstance(encoded, WireError):
        raise encoded
    return encoded


def encode_stacked(
    name: str, stacked: Tensor, fmt: WireFormat, generator: torch.Generator | None
) -> list[Encoded | WireError]:
    """``encode_tensor`` for each slice of ``stacked`` (dim 0: one per sender), in one go.

    The arithmetic (quantizing, casting, checking) runs once for the whole stack, on its
    device, and the results cross to the host in one copy: for a round's clients that
    is a few ops per tensor instead of a few per tensor and client. Each sender's
    entry and bytes are what ``encode_tensor`` would give it alone, and a sender
    whose values cannot be sent gets its own WireError, leaving the others. Several
    senders share one draw of noise, so callers stack only under nearest rounding.
    Empty float tensors travel raw even under BFP: they have no values to scale a
    block by, and cost no body bytes either way.
    """
    if not isinstance(name, str):
        raise WireError(f"tensor names must be strings, got {name!r}")
    values = stacked.detach()
    shape = tuple(values.shape[1:])
    if not values.is_floating_point():
        wire_dtype = dtype_name(values.dtype)
        if wire_dtype is None:
            raise WireError(f"cannot send {name!r}: dtype {values.dtype} is not supported")
        return _raw(TensorSpec(name, shape, wire_dtype, RAW), values.cpu())
    if fmt.quantizes and math.prod(shape) > 0:
        return _bfp(name, values, fmt, generator)
    encoding = HALF if fmt.float_dtype == HALF else RAW
    spec = TensorSpec(name, shape, DECODED_FLOAT, encoding)
    return _raw(spec, values.to(torch_dtype(spec.wire_dtype)).cpu())


def _finite(values: Tensor) -> list[bool]:
    """Per sender (dim 0): whether all its values are finite."""
    return finite_slices(values).tolist()


def _bfp(
    name: str, values: Tensor, fmt: WireFormat, generator: torch.Generator | None
) -> list[Encoded | WireError]:
    quantized = block_decompose(
        values, fmt.bits, fmt.block, fmt.rounding, generator, batch_dims=1, check=False
    )
    spec = TensorSpec.bfp(name, tuple(values.shape[1:]), fmt.bits, fmt.block)
    mantissas, exponents = quantized.mantissa.cpu().numpy(), quantized.exponent.cpu().numpy()
    return [
        (spec, [exponents[j].tobytes(), pack_signed(mantissas[j], fmt.bits)])
        if ok
        else WireError(f"cannot encode {name!r}: {non_finite(spec.shape)}")
        for j, ok in enumerate(_finite(values))
    ]


def _raw(spec: TensorSpec, values: Tensor) -> list[Encoded | WireError]:
    """``values`` (on the host) already has the wire dtype; floats must be finite there
    (float16 can overflow)."""
    ok = _finite(values) if values.is_floating_point() else [True] * len(values)
    wire = values.numpy().astype(numpy_dtype(spec.wire_dtype), copy=False)
    return [
        (spec, [wire[j].tobytes()])
        if fine
        else WireError(f"cannot encode {spec.name!r} as {spec.wire_dtype}: it holds NaN or Inf")
        for j, fine in enumerate(ok)
    ]


def decode_tensor(spec: TensorSpec, data: memoryview) -> Tensor:
    """The tensor for ``spec`` from exactly ``spec.body_size`` bytes (raises WireError)."""
    (tensor,) = decode_stacked(spec, [data])
    if isinstance(tensor, WireError):
        raise tensor
    return tensor


def decode_stacked(spec: TensorSpec, datas: Sequence[memoryview]) -> list[Tensor | WireError]:
    """``decode_tensor`` for the same tensor of several messages, in one go.

    The server receives a round's updates with the same layout: their values are
    unpacked per message, then scaled (or cast and checked) once for all, so a round
    costs a few ops per tensor rather than per tensor and client. A message whose
    values are NaN/Inf gets its own WireError. The tensors returned are slices of
    one stack: read them, do not write to them.
    """
    k = len(datas)
    fmt = spec.bfp_format
    if fmt is None:
        wire = np.stack([np.frombuffer(d, numpy_dtype(spec.wire_dtype), spec.numel) for d in datas])
        native = wire.astype(wire.dtype.newbyteorder("="), copy=False)  # stack made it writable
        tensors = torch.from_numpy(native).reshape(k, *spec.shape).to(torch_dtype(spec.dtype))
        ok = _finite(tensors) if tensors.is_floating_point() else [True] * k
        error = WireError(f"tensor {spec.name!r} holds NaN or Inf")
        return [t if fine else error for t, fine in zip(tensors, ok, strict=True)]
    bits, block = fmt
    exponents = np.stack([np.frombuffer(d, np.int8, spec.blocks) for d in datas])
    mantissas = np.stack([unpack_signed(d[spec.blocks :], bits, spec.numel) for d in datas])
    quantized = BlockQuantized(
        torch.from_numpy(mantissas).reshape(k, *spec.shape),
        torch.from_numpy(exponents).reshape(k, *spec.exponent_shape),
        bits,
        block,
    )
    return list(quantized.dequantize())  # finite by construction
