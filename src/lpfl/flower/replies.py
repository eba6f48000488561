"""Flower reply messages -> lpfl ClientReplies, and who dropped out of the round.

A node that errs, sends a reply without the expected records, or does not answer in
time is dropped here with its reason; a reply that arrives intact but holds bad wire
bytes goes on to :meth:`lpfl.engine.Server.update`, which rejects it as it does in the
simulator. Either way the round continues with the rest. Clients are named by their
Flower node id: that is what identifies them to the server.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from flwr.app import Message

from ..engine import ClientReply, Rejection
from . import protocol

log = logging.getLogger(__name__)


def _reply(msg: Message) -> ClientReply:
    node = msg.metadata.src_node_id
    metrics = msg.content[protocol.METRICS_KEY]
    return ClientReply(
        node,
        protocol.from_record(msg.content[protocol.UPDATE_KEY]),
        int(metrics[protocol.NUM_EXAMPLES]),
        float(metrics[protocol.TRAIN_LOSS]),
    )


def collect(
    round_: int, sampled: Iterable[int], answers: Iterable[Message], timeout: float
) -> tuple[list[ClientReply], list[Rejection]]:
    """The replies to hand to the server, and the nodes dropped before it saw them."""
    replies: list[ClientReply] = []
    dropped: list[Rejection] = []
    missing = set(sampled)
    for msg in answers:
        node = msg.metadata.src_node_id
        missing.discard(node)
        if msg.has_error():
            dropped.append(Rejection(node, f"node failed: {msg.error.reason}"))
            continue
        try:
            replies.append(_reply(msg))
        except (KeyError, TypeError, ValueError) as exc:
            dropped.append(Rejection(node, f"malformed reply: {exc!r}"))
    dropped += [Rejection(node, f"no reply within {timeout:g} s") for node in sorted(missing)]
    for r in dropped:
        log.warning("round %d: client %d dropped: %s", round_, r.client, r.reason)
    return replies, dropped
