"""Which partition each Flower node holds, asked of the node itself.

Flower names nodes by random ids; lpfl names clients by the partition they hold, as the
simulator does. Knowing it lets the server sample clients exactly as the simulator
samples them, record results by client, and (HeteroFL, SplitMix) plan each client's
sub-model from its width budget before sending it. A node is asked once, the first
round it is seen, with a QUERY message its ClientApp answers from its node config;
the answer also says whether the node keeps its optimizer state on disk, which a
resumed run needs to continue it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from flwr.app import Message, MessageType, RecordDict
from flwr.serverapp import Grid

from . import protocol

log = logging.getLogger(__name__)


class Roster:
    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.client_of: dict[int, int] = {}  # node id -> partition id
        self.durable: set[int] = set()  # nodes whose optimizer state outlives a Flower run

    def learn(self, grid: Grid, nodes: Sequence[int], timeout: float) -> None:
        """Ask the nodes not known yet which partition they hold.

        A node that does not answer, answers nonsense, cut the data into another number
        of partitions than the run has clients, or claims a partition another node holds
        is left out (logged) and asked again next round.
        """
        connected = set(nodes)  # a node that left frees its partition for its successor
        self.client_of = {n: p for n, p in self.client_of.items() if n in connected}
        new = [n for n in nodes if n not in self.client_of]
        if not new:
            return
        asked = [Message(RecordDict(), dst_node_id=n, message_type=MessageType.QUERY) for n in new]
        answers = grid.send_and_receive(asked, timeout=timeout)
        node_of = {msg.metadata.message_id: msg.metadata.dst_node_id for msg in asked}
        for answer in answers:
            node = node_of.get(answer.metadata.reply_to_message_id)
            if node is None:
                continue
            try:
                if answer.has_error():
                    raise ValueError(answer.error.reason)
                metrics = answer.content[protocol.METRICS_KEY]
                part, parts = metrics[protocol.PARTITION_ID], metrics[protocol.NUM_PARTITIONS]
                if parts != self.partitions:  # its data would not be any client's
                    raise ValueError(
                        f"it split the data into {parts!r} partitions, the run into "
                        f"{self.partitions} (set its num-partitions to the run's clients)"
                    )
                if not isinstance(part, int) or not 0 <= part < self.partitions:
                    raise ValueError(f"partition {part!r} is not in [0, {self.partitions})")
                if part in self.client_of.values():
                    raise ValueError(f"partition {part} is already held by another node")
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("node %d left out: cannot tell its partition: %s", node, exc)
                continue
            self.client_of[node] = part
            if metrics.get(protocol.KEEPS_STATE):
                self.durable.add(node)

    def clients(self, nodes: Sequence[int]) -> dict[int, int]:
        """Partition id -> node id, for the given nodes whose partition is known."""
        return {self.client_of[n]: n for n in nodes if n in self.client_of}
