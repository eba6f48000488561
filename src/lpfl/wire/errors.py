"""The one exception a receiver has to catch for any message it should not trust."""

from __future__ import annotations


class WireError(ValueError):
    """A message (or a request to build one) that cannot be honoured exactly.

    Subclassing ``ValueError`` lets callers that already treat bad input as a value
    error keep working, while servers can catch this alone to drop one client's
    upload without masking bugs elsewhere.
    """
