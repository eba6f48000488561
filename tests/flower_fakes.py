"""In-process stand-ins for a Flower federation: node contexts and a Grid that runs
the ClientApp in this process, with nodes that can break, fall silent, die or crash."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path

import pytest
from flwr.app import Context, Error, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

from lpfl.flower import protocol, settings
from lpfl.flower.client_app import app as client_app


@pytest.fixture(autouse=True)
def task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower stamps messages with the running task's ids; outside a run there is none."""
    for name, value in (("_run_id", 1), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)


def node_context(
    node: int, partition_id: int, num_partitions: int, state_dir: Path | None = None
) -> Context:
    config = {"partition-id": partition_id, "num-partitions": num_partitions}
    if state_dir is not None:
        config["state-dir"] = str(state_dir)
    return Context(run_id=1, node_id=node, node_config=config, state=RecordDict(), run_config={})


class PowerCut(Exception):
    """The server's process dying mid-round."""


class FakeGrid(Grid):
    """Answers in-process, like a federation with a broken, a silent and a dead node.

    As Flower's grids do, it gives each sent message an id; the SuperLink answers for a
    dead node itself, with an error from node 1 that replies to the message sent to it.
    """

    def __init__(
        self,
        nodes: int,
        corrupt: int | None = None,
        silent: int | None = None,
        dead: int | None = None,
        counts: dict[int, object] | None = None,
        state_dir: Path | None = None,
        crash_in_round: int | None = None,
    ) -> None:
        """Node n holds partition n-1 and keeps its optimizer state under
        ``state_dir``/node{n} if given; the server's process dies once the nodes have
        trained round ``crash_in_round``."""
        self.contexts = {
            n: node_context(n, n - 1, nodes, state_dir and state_dir / f"node{n}")
            for n in range(1, nodes + 1)
        }
        self.crash_in_round = crash_in_round
        self.corrupt, self.silent, self.dead = corrupt, silent, dead
        self.counts = counts or {}  # node -> the label counts it sends instead (None: none)
        self.sent: list[Message] = []
        self.queries: list[Message] = []  # the server asking each node for its partition

    def send_and_receive(self, messages: Iterable[Message], *, timeout=None) -> list[Message]:
        answers, crashed = [], False
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = uuid.uuid4().hex
            node = msg.metadata.dst_node_id
            if msg.metadata.message_type == MessageType.QUERY:  # nodes fail in training only
                self.queries.append(msg)
                answers.append(client_app(msg, self.contexts[node]))
                continue
            self.sent.append(msg)
            if node == self.silent:
                continue
            if node == self.dead:
                reply = Message(Error(code=5, reason="Node Unavailable"), reply_to=msg)
                reply.metadata.__dict__["_src_node_id"] = 1  # the SuperLink's node id
            else:
                reply = client_app(msg, self.contexts[node])
            if node == self.corrupt:
                payload = protocol.from_record(reply.content[protocol.UPDATE_KEY])
                reply.content[protocol.UPDATE_KEY] = protocol.to_record(payload[:-7])
            if node in self.counts:
                metrics = dict(reply.content[protocol.METRICS_KEY])
                metrics.pop(protocol.LABEL_COUNTS)
                if self.counts[node] is not None:
                    metrics[protocol.LABEL_COUNTS] = self.counts[node]
                reply.content[protocol.METRICS_KEY] = MetricRecord(metrics)
            answers.append(reply)
            server_round = msg.content[protocol.CONFIG_KEY][settings.ROUND_KEY]
            if (
                msg.metadata.message_type == MessageType.TRAIN
                and server_round == self.crash_in_round
            ):
                crashed = True
        if crashed:
            raise PowerCut(f"the server died in round {self.crash_in_round}")
        return answers

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def set_run(self, run) -> None:
        raise NotImplementedError

    @property
    def run(self):
        raise NotImplementedError

    def create_message(self, *args, **kwargs) -> Message:
        raise NotImplementedError

    def push_messages(self, messages):
        raise NotImplementedError

    def pull_messages(self, message_ids):
        raise NotImplementedError
