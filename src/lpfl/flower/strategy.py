"""lpfl's server as a Flower Strategy: Flower drives the round, lpfl's Server does the work.

``Strategy.start`` runs each round as configure_train -> send -> aggregate_train ->
configure_evaluate -> send -> aggregate_evaluate -> evaluate_fn. The hooks below fill
those steps with what the simulator does: sample clients, broadcast Q(w̄) in wire
format (FedGen's generator beside it), decode and check each reply (a malformed or
missing one, or one without the per-class counts FedGen and FedFTG need, is rejected
and logged, the round goes on), aggregate in float32 and step the moving average or server
optimizer (``engine.Server``, imported, not copied), then evaluate on the server's
test set and record the round in the ``lpfl run`` results schema (and, every
``checkpoint-every`` rounds, a checkpoint a resumed run continues from). A resumed run
is a new Flower run, whose rounds Flower counts from 1 again; the hooks add the rounds
done before it, so nodes, records and checkpoints see lpfl's round. The ArrayRecords
Flower passes around carry the float32 global model for Flower's own bookkeeping;
what travels to the nodes is always lpfl's wire bytes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from ..config import RunConfig
from ..engine import ClientReply, Recorder, Rejection, Server, setup
from ..wire import decode
from . import protocol, replies, settings
from .evaluation import evaluation_messages, weighted
from .roster import Roster
from .settings import FlowerSettings

log = logging.getLogger(__name__)

Evaluate = Callable[[int], tuple[float, float] | None]  # round -> (accuracy, loss) or skipped
Save = Callable[[int], None]  # writes the checkpoint of the round just recorded


class LowPrecisionStrategy(Strategy):
    def __init__(
        self,
        cfg: RunConfig,
        server: Server,
        recorder: Recorder,
        evaluate: Evaluate,
        flower: FlowerSettings,
        run_token: str,
        save: Save | None = None,
        done: int = 0,
    ) -> None:
        """``save`` (None: no checkpoints) is called every ``checkpoint_every`` rounds;
        ``done`` rounds were run before this Flower run (a resumed run's)."""
        self.cfg, self.server, self.recorder = cfg, server, recorder
        self.evaluate, self.flower = evaluate, flower
        self.run_token, self.save, self.done = run_token, save, done
        self.checkpointed = done  # the last round a checkpoint holds
        self.rng = np.random.default_rng(cfg.seed)  # client sampling, as in the simulator
        self.roster = Roster(cfg.clients)
        self._warned: set[int] = set()  # resumed clients told to have restarted their state
        self._sent: list[Message] = []
        self._clients: list[int] = []  # the partition each sent message went to
        self._bytes_down = 0
        self._broadcast = b""
        self._inputs: bytes | None = None
        self._uploads: list[ClientReply] = []
        self._rejected: list[Rejection] = []
        self._on_clients: tuple[float, float] | None = None
        self._tic = 0.0

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Sample clients among the nodes connected, as the simulator samples its clients
        (with every node connected, the same ones); each gets the broadcast, or for
        HeteroFL/SplitMix its own slice of it and the plan to train it."""
        self._tic = time.perf_counter()
        rnd = server_round + self.done
        connected = sorted(grid.get_node_ids())
        self.roster.learn(grid, connected, self.flower.round_timeout)
        node_of = self.roster.clients(connected)  # partition id -> node id
        clients = sorted(node_of)
        k = min(self.cfg.clients_per_round, len(clients))
        sampled = [clients[i] for i in sorted(self.rng.choice(len(clients), k, replace=False))]
        self._warn_restarted(rnd, [c for c in sampled if node_of[c] not in self.roster.durable])
        self._broadcast = self.server.broadcast()
        self._inputs = self.server.client_inputs()
        payloads = self._payloads(sampled)
        self._bytes_down = sum(map(len, payloads)) + len(self._inputs or b"") * k
        # Records every message carries alike are built once: the broadcast (unless each
        # client gets its own slice) and FedGen's generator.
        broadcast = protocol.to_record(self._broadcast)
        extra = (
            {} if self._inputs is None else {protocol.INPUTS_KEY: protocol.to_record(self._inputs)}
        )
        self._sent = []
        for client, payload in zip(sampled, payloads, strict=True):
            model = broadcast if payload is self._broadcast else protocol.to_record(payload)
            config_ = self._config(client, rnd)
            content = RecordDict({protocol.MODEL_KEY: model, protocol.CONFIG_KEY: config_, **extra})
            train = MessageType.TRAIN  # the Grid gives these very objects their ids
            self._sent.append(Message(content, dst_node_id=node_of[client], message_type=train))
        self._clients = sampled
        return self._sent

    def _payloads(self, sampled: list[int]) -> list[bytes]:
        """The model bytes each sampled client receives."""
        submodels = self.server.submodels
        if submodels is None:
            return [self._broadcast] * len(sampled)
        submodels.begin_round()
        start = decode(self._broadcast)
        for client in sampled:
            submodels.plan(client)
        return [self.server.submodel_payload(client, start) for client in sampled]

    def _warn_restarted(self, rnd: int, clients: list[int]) -> None:
        """A resumed run's nodes without a ``state-dir`` lost their optimizer state with
        the Flower run that crashed; say so once per client, as it changes the rounds."""
        fresh = [c for c in clients if c not in self._warned]
        if not self.done or self.cfg.optimizer_state != "persist" or not fresh:
            return
        self._warned.update(fresh)
        log.warning(
            "round %d: resumed clients %s keep no optimizer state on disk (no state-dir in "
            "their node config): they restart it, so these rounds differ from an "
            "uninterrupted run's", rnd, fresh,
        )  # fmt: skip

    def _config(self, client: int, rnd: int) -> ConfigRecord:
        # Without checkpoints no round is ever replayed: a node keeps its newest state only.
        checkpointed = self.checkpointed if self.save is not None else rnd
        record = settings.to_record(self.cfg, rnd, self.run_token, checkpointed)
        if self.server.submodels is not None:
            settings.add_plan(record, self.server.submodels.plans[client])
        return record

    def aggregate_train(
        self, server_round: int, replies_: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        rnd = server_round + self.done
        uploads, dropped = replies.collect(
            rnd, self._sent, self._clients, replies_, self.flower.round_timeout
        )
        self._uploads = uploads
        self._rejected = dropped + self.server.update(rnd, uploads)
        for r in self._rejected:
            self.recorder.reject(rnd, r.client, r.reason)
        metrics = MetricRecord({"uploads": len(uploads), "rejected": len(self._rejected)})
        return ArrayRecord(torch_state_dict=self.server.model), metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Client-side evaluation only every ``client-eval-every`` rounds (0: never)."""
        self._on_clients = None
        rnd = server_round + self.done
        every = self.flower.client_eval_every
        if not every or rnd % every:
            return []
        return evaluation_messages(grid, self.server.model, self.cfg, rnd)

    def aggregate_evaluate(
        self, server_round: int, replies_: Iterable[Message]
    ) -> MetricRecord | None:
        answers = list(replies_)
        if not answers:
            return None
        self._on_clients = weighted(answers, server_round + self.done)
        if self._on_clients is None:
            return None
        return MetricRecord({"accuracy": self._on_clients[0], "loss": self._on_clients[1]})

    def evaluate_fn(self, server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        """The round's last step: server-side test evaluation, the round's record, and
        every ``checkpoint_every`` rounds a checkpoint."""
        if server_round == 0:  # Flower asks about the initial model too; the simulator does not
            return None
        rnd = server_round + self.done
        evaluated = self.evaluate(rnd)
        metrics = setup.round_metrics(
            rnd, evaluated, time.perf_counter() - self._tic, len(self._sent),
            self._uploads, len(self._rejected), self._broadcast, on_clients=self._on_clients,
            bytes_down=self._bytes_down, client_drift=self.server.drift,
        )  # fmt: skip
        self.recorder.record(metrics)
        if self.save is not None and rnd % self.cfg.checkpoint_every == 0:
            self.save(rnd)
            self.checkpointed = rnd
        if evaluated is None:
            return None
        return MetricRecord({"accuracy": evaluated[0], "loss": evaluated[1]})

    def summary(self) -> None:
        log.info(
            "lpfl low-precision strategy: %s, %d bits, moving average %g, %d of %d clients",
            self.cfg.algorithm, self.cfg.bits, self.cfg.moving_average,
            self.cfg.clients_per_round, self.cfg.clients,
        )  # fmt: skip
