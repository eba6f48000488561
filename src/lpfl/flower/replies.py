"""Flower reply messages -> lpfl ClientReplies, and who dropped out of the round.

A node that errs, sends a reply without the expected records, or does not answer in
time is dropped here with its reason; a reply that arrives intact but holds bad wire
bytes goes on to :meth:`lpfl.engine.Server.update`, which rejects it as it does in the
simulator. Either way the round continues with the rest. Clients are named by their
Flower node id: that is what identifies them to the server. An answer is matched to its
node through the message it replies to, not its sender: when a node dies, the SuperLink
itself answers in its place (an error from node 1), and that answer must still count
against the node that died.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from flwr.app import Message

from ..engine import ClientReply, Rejection
from . import protocol

log = logging.getLogger(__name__)


def _reply(node: int, msg: Message) -> ClientReply:
    metrics = msg.content[protocol.METRICS_KEY]
    return ClientReply(
        node,
        protocol.from_record(msg.content[protocol.UPDATE_KEY]),
        int(metrics[protocol.NUM_EXAMPLES]),
        float(metrics[protocol.TRAIN_LOSS]),
        protocol.label_counts(metrics),
    )


def collect(
    round_: int, sent: Sequence[Message], answers: Iterable[Message], timeout: float
) -> tuple[list[ClientReply], list[Rejection]]:
    """The replies to hand to the server, and the nodes dropped before it saw them.

    ``sent`` are the messages as the Grid sent them (it gives each its id)."""
    node_of = {msg.metadata.message_id: msg.metadata.dst_node_id for msg in sent}
    replies: list[ClientReply] = []
    dropped: list[Rejection] = []
    missing = set(node_of.values())
    for msg in answers:
        node = node_of.get(msg.metadata.reply_to_message_id)
        if node is None or node not in missing:
            log.warning("round %d: ignored an answer to no message of this round", round_)
            continue
        missing.discard(node)
        if msg.has_error():
            dropped.append(Rejection(node, f"node failed: {msg.error.reason}"))
            continue
        try:
            replies.append(_reply(node, msg))
        except (KeyError, TypeError, ValueError) as exc:
            dropped.append(Rejection(node, f"malformed reply: {exc!r}"))
    dropped += [Rejection(node, f"no reply within {timeout:g} s") for node in sorted(missing)]
    for r in dropped:
        log.warning("round %d: client %d dropped: %s", round_, r.client, r.reason)
    return replies, dropped
