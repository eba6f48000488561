"""The optional lossless stage over the packed body.

Decompression is bounded by the size the header declares, so a small hostile
body cannot expand into an unbounded allocation, and a stream that ends early,
runs long or carries trailing data is refused rather than half-read.
"""

from __future__ import annotations

import lzma
import sys
import zlib

from .errors import WireError


def compress(body: bytes, method: str) -> bytes:
    if method == "zlib":
        return zlib.compress(body)
    if method == "lzma":
        return lzma.compress(body)
    return body


def decompress(data: memoryview, method: str, size: int) -> memoryview:
    """The body as ``size`` bytes, or WireError when it does not match the header."""
    body = data if method == "none" else _inflate(data, method, size)
    if len(body) != size:
        raise WireError(
            f"body length {len(body)} is inconsistent with the header, which describes {size} bytes"
        )
    return body


def _inflate(data: memoryview, method: str, size: int) -> memoryview:
    decompressor = zlib.decompressobj() if method == "zlib" else lzma.LZMADecompressor()
    try:
        # One byte more than declared: a stream that runs long shows up as too long.
        body = decompressor.decompress(data, min(size, sys.maxsize - 1) + 1)
    except (zlib.error, lzma.LZMAError) as err:
        raise WireError(f"body does not decompress as {method}: {err}") from err
    if len(body) == size and (not decompressor.eof or decompressor.unused_data):
        raise WireError(f"{method} body is not exactly one complete stream")
    return memoryview(body)
