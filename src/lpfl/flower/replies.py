"""Flower reply messages -> lpfl ClientReplies, and who dropped out of the round.

A node that errs, sends a reply without the expected records, or does not answer in
time is dropped here with its reason; a reply that arrives intact but holds bad wire
bytes goes on to :meth:`lpfl.engine.Server.update`, which rejects it as it does in the
simulator. Either way the round continues with the rest. Clients are named by the
partition they hold (see ``roster``), as the simulator names them. An answer is matched
to its client through the message it replies to, not its sender: when a node dies, the
SuperLink itself answers in its place (an error from node 1), and that answer must still
count against the node that died.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from flwr.app import Message

from ..engine import ClientReply, Rejection
from . import protocol

log = logging.getLogger(__name__)


def _reply(client: int, msg: Message) -> ClientReply:
    metrics = msg.content[protocol.METRICS_KEY]
    return ClientReply(
        client,
        protocol.from_record(msg.content[protocol.UPDATE_KEY]),
        int(metrics[protocol.NUM_EXAMPLES]),
        float(metrics[protocol.TRAIN_LOSS]),
        protocol.label_counts(metrics),
    )


def collect(
    round_: int,
    sent: Sequence[Message],
    clients: Sequence[int],
    answers: Iterable[Message],
    timeout: float,
) -> tuple[list[ClientReply], list[Rejection]]:
    """The replies to hand to the server, in client order, and the clients dropped
    before it saw them.

    ``sent`` are the messages as the Grid sent them (it gives each its id), ``clients``
    the partition each went to: clients are named by the data they hold, as in the
    simulator, and a rejection's reason names the Flower node."""
    client_of = {m.metadata.message_id: c for m, c in zip(sent, clients, strict=True)}
    node_of = {c: m.metadata.dst_node_id for m, c in zip(sent, clients, strict=True)}
    replies: list[ClientReply] = []
    dropped: list[Rejection] = []
    missing = set(clients)
    for msg in answers:
        client = client_of.get(msg.metadata.reply_to_message_id)
        if client is None or client not in missing:
            log.warning("round %d: ignored an answer to no message of this round", round_)
            continue
        missing.discard(client)
        node = node_of[client]
        if msg.has_error():
            dropped.append(Rejection(client, f"node {node} failed: {msg.error.reason}"))
            continue
        try:
            replies.append(_reply(client, msg))
        except (KeyError, TypeError, ValueError) as exc:
            dropped.append(Rejection(client, f"malformed reply from node {node}: {exc!r}"))
    dropped += [
        Rejection(c, f"no reply within {timeout:g} s from node {node_of[c]}")
        for c in sorted(missing)
    ]
    for r in dropped:
        log.warning("round %d: client %d dropped: %s", round_, r.client, r.reason)
    # In client order, as the simulator's: float sums depend on the order of their terms,
    # and replies arrive in whatever order the network delivers them.
    return sorted(replies, key=lambda r: r.client), dropped
