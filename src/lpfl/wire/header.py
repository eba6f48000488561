"""The header: compact JSON naming every tensor, its shape and encoding, and the compression.

JSON keeps the header self-describing and easy to inspect, and at ~50 bytes per
tensor costs about 0.2 % of an 8-bit ConvNet message; the bulk of the bytes are
in the body, which is packed binary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property, lru_cache

from .errors import WireError
from .format import COMPRESSIONS
from .spec import TensorSpec

_KEYS = {"compression", "tensors"}


@dataclass(frozen=True)
class Header:
    compression: str
    tensors: tuple[TensorSpec, ...]

    @cached_property
    def body_size(self) -> int:
        """Length of the body before compression: the sum of every tensor's bytes."""
        return sum(spec.body_size for spec in self.tensors)

    def to_bytes(self) -> bytes:
        document = {
            "compression": self.compression,
            "tensors": [spec.to_json() for spec in self.tensors],
        }
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Header:
        """Parse and validate; the checksum has passed, so any error here is the sender's bug.

        A round's uploads share one layout, so each distinct header is parsed once and
        the (immutable) result reused, with the sizes its specs have worked out.
        """
        return _parse(bytes(data))


@lru_cache(maxsize=64)
def _parse(data: bytes) -> Header:
    try:
        document = json.loads(data.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WireError(f"malformed header: not valid JSON ({err})") from err
    if not (isinstance(document, dict) and document.keys() == _KEYS):
        raise WireError(f"malformed header: expected an object with keys {sorted(_KEYS)}")
    compression, entries = document["compression"], document["tensors"]
    if compression not in COMPRESSIONS:
        raise WireError(f"malformed header: unknown compression {compression!r}")
    if not isinstance(entries, list):
        raise WireError("malformed header: 'tensors' is not a list")
    tensors = tuple(TensorSpec.from_json(entry) for entry in entries)
    names = [spec.name for spec in tensors]
    if len(set(names)) != len(names):
        raise WireError("malformed header: duplicate tensor names")
    return Header(compression, tensors)
