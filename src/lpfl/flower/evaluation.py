"""Federated evaluation: the global model scored by the nodes on their own data.

The server's test-set evaluation says how good the global model is; this says how well
it fits each client's (non-IID) data, which only the clients can tell. The nodes get
the fp32 global model the server evaluates, not the quantized broadcast, so both
numbers describe the same model, and the server's rounding stream is left untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from flwr.app import Message, MessageType, RecordDict
from flwr.serverapp import Grid

from ..algorithms import State
from ..config import RunConfig
from ..wire import WireFormat, encode
from . import protocol, settings

log = logging.getLogger(__name__)


def weighted(answers: Iterable[Message], round_: int) -> tuple[float, float] | None:
    """Sample-weighted accuracy and loss over the answers; failed or malformed ones are
    logged and left out, and None means no node answered usefully."""
    total = accuracy = loss = 0.0
    for msg in answers:
        node = msg.metadata.src_node_id
        try:
            if msg.has_error():
                raise ValueError(msg.error.reason)
            metrics = msg.content[protocol.METRICS_KEY]
            n = int(metrics[protocol.NUM_EXAMPLES])
            acc, lo = float(metrics[protocol.ACCURACY]), float(metrics[protocol.LOSS])
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("round %d: evaluation by node %d left out: %s", round_, node, exc)
            continue
        total, accuracy, loss = total + n, accuracy + n * acc, loss + n * lo
    return (accuracy / total, loss / total) if total else None


def evaluation_messages(grid: Grid, model: State, cfg: RunConfig, round_: int) -> list[Message]:
    """Every connected node is asked to evaluate ``model`` (fp32) on its partition."""
    content = RecordDict(
        {
            protocol.MODEL_KEY: protocol.to_record(encode(model, WireFormat())),  # fp32
            protocol.CONFIG_KEY: settings.to_record(cfg, round_),
        }
    )
    return [
        Message(content, dst_node_id=node, message_type=MessageType.EVALUATE)
        for node in sorted(grid.get_node_ids())
    ]
