"""One tensor to header entry + body bytes, and back.

Floating tensors are quantized with the same ``block_decompose`` that training
uses, so what arrives is exactly what ``block_quantize`` would have produced;
everything else (and every float at full precision) travels as plain values.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..quant import BlockQuantized, NonFiniteError, block_decompose
from .bitpack import pack_signed, unpack_signed
from .dtypes import DECODED_FLOAT, dtype_name, numpy_dtype, torch_dtype
from .errors import WireError
from .format import WireFormat
from .spec import HALF, RAW, TensorSpec


def encode_tensor(
    name: str, tensor: Tensor, fmt: WireFormat, generator: torch.Generator | None
) -> tuple[TensorSpec, list[bytes]]:
    """Header entry and body chunks for one tensor.

    Empty float tensors travel raw even under BFP: they have no values to scale a
    block by, and cost no body bytes either way.
    """
    if not isinstance(name, str):
        raise WireError(f"tensor names must be strings, got {name!r}")
    values = tensor.detach().cpu()
    if not values.is_floating_point():
        wire_dtype = dtype_name(values.dtype)
        if wire_dtype is None:
            raise WireError(f"cannot send {name!r}: dtype {values.dtype} is not supported")
        return _encode_raw(TensorSpec(name, tuple(values.shape), wire_dtype, RAW), values)
    if fmt.quantizes and values.numel() > 0:
        return _encode_bfp(name, values, fmt, generator)
    encoding = HALF if fmt.float_dtype == HALF else RAW
    spec = TensorSpec(name, tuple(values.shape), DECODED_FLOAT, encoding)
    return _encode_raw(spec, values.to(torch_dtype(spec.wire_dtype)))


def _encode_bfp(
    name: str, values: Tensor, fmt: WireFormat, generator: torch.Generator | None
) -> tuple[TensorSpec, list[bytes]]:
    try:
        quantized = block_decompose(values, fmt.bits, fmt.block, fmt.rounding, generator)
    except NonFiniteError as err:
        raise WireError(f"cannot encode {name!r}: {err}") from err
    spec = TensorSpec.bfp(name, tuple(values.shape), fmt.bits, fmt.block)
    exponents = quantized.exponent.numpy().tobytes()
    return spec, [exponents, pack_signed(quantized.mantissa.numpy(), fmt.bits)]


def _encode_raw(spec: TensorSpec, values: Tensor) -> tuple[TensorSpec, list[bytes]]:
    """``values`` already has the wire dtype; floats must be finite there (float16 can overflow)."""
    if values.is_floating_point() and not bool(torch.isfinite(values).all()):
        raise WireError(f"cannot encode {spec.name!r} as {spec.wire_dtype}: it holds NaN or Inf")
    return spec, [values.numpy().astype(numpy_dtype(spec.wire_dtype), copy=False).tobytes()]


def decode_tensor(spec: TensorSpec, data: memoryview) -> Tensor:
    """The tensor for ``spec`` from exactly ``spec.body_size`` bytes."""
    fmt = spec.bfp_format
    if fmt is None:
        return _decode_raw(spec, data)
    bits, block = fmt
    exponents = np.frombuffer(data, np.int8, spec.blocks).copy()
    mantissas = unpack_signed(data[spec.blocks :], bits, spec.numel)
    quantized = BlockQuantized(
        torch.from_numpy(mantissas).reshape(spec.shape),
        torch.from_numpy(exponents).reshape(spec.exponent_shape),
        bits,
        block,
    )
    return quantized.dequantize()


def _decode_raw(spec: TensorSpec, data: memoryview) -> Tensor:
    wire = np.frombuffer(data, numpy_dtype(spec.wire_dtype), spec.numel)
    native = wire.astype(wire.dtype.newbyteorder("="))  # a writable copy torch can own
    tensor = torch.from_numpy(native).reshape(spec.shape).to(torch_dtype(spec.dtype))
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        raise WireError(f"tensor {spec.name!r} holds NaN or Inf")
    return tensor
