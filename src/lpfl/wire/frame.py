"""The envelope around header and body: magic, version, lengths and a CRC32.

Layout (little-endian)::

    b"LPFL" | version u8 | header length u32 | body length u64 | header | body | crc32 u32

The CRC covers everything before it. Both lengths sit in the fixed prefix so that a
cut-off message is reported as truncated, not as a checksum failure.
"""

from __future__ import annotations

import struct
import zlib

from .errors import WireError

MAGIC = b"LPFL"
VERSION = 1
_PREFIX = struct.Struct("<4sBIQ")
_CRC = struct.Struct("<I")
OVERHEAD = _PREFIX.size + _CRC.size  # bytes of every message outside header and body


def seal(header: bytes, body: bytes) -> bytes:
    prefix = _PREFIX.pack(MAGIC, VERSION, len(header), len(body))
    crc = zlib.crc32(body, zlib.crc32(header, zlib.crc32(prefix)))
    return b"".join((prefix, header, body, _CRC.pack(crc)))


def unseal(payload: bytes) -> tuple[bytes, memoryview]:
    """(header, body) of a message whose framing and checksum are intact; the body is not copied."""
    view = memoryview(payload).cast("B")
    if bytes(view[: len(MAGIC)]) != MAGIC[: len(view)]:
        raise WireError(f"bad magic {bytes(view[: len(MAGIC)])!r}: not an lpfl message")
    if len(view) < OVERHEAD:
        raise WireError(f"truncated payload: {len(view)} bytes is shorter than any message")
    _, version, header_size, body_size = _PREFIX.unpack_from(view)
    if version != VERSION:
        raise WireError(f"unsupported wire format version {version} (this reader knows {VERSION})")
    total = OVERHEAD + header_size + body_size
    if len(view) < total:
        raise WireError(f"truncated payload: {len(view)} bytes of the {total} the frame declares")
    if len(view) > total:
        raise WireError(f"{len(view) - total} unexpected bytes after the end of the message")
    (expected_crc,) = _CRC.unpack_from(view, total - _CRC.size)
    if zlib.crc32(view[: total - _CRC.size]) != expected_crc:
        raise WireError("checksum mismatch: the message was corrupted in transit")
    header_end = _PREFIX.size + header_size
    return bytes(view[_PREFIX.size : header_end]), view[header_end : header_end + body_size]
