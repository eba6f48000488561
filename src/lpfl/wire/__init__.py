"""The bytes that cross the network: BFP mantissas packed at their true width, checked on arrival.

``decode(encode(x, fmt))`` equals ``block_quantize(x, fmt.bits, ...)`` bit for bit,
so the server aggregates exactly what the clients trained with, and every message
it cannot trust is refused with a :class:`WireError`.
"""

from .errors import WireError
from .format import WireFormat
from .message import decode, decode_many, encode, encode_many, fp32_bytes

__all__ = [
    "WireError",
    "WireFormat",
    "decode",
    "decode_many",
    "encode",
    "encode_many",
    "fp32_bytes",
]
