"""The server: decodes client replies, aggregates in float32, steps the global model.

The default step is the paper's moving average ``w̄ ← λ·w̄ + (1-λ)·aggregate``. Since
clients start from w̄, this is FedAvg with a server learning rate of 1-λ; it smooths
out the drift of low-precision local models. FedAvgM and FedAdam steps plug in the
same way (``algorithms/server_optimizers.py``).
Replies arrive as wire-format bytes; one that cannot be trusted is rejected and
logged, and the round goes on with the others.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from ..algorithms import Algorithm, ClientUpdate, State, SubModelAlgorithm
from ..algorithms.server_optimizers import ServerOptimizer, ServerSGD
from ..quant.finite import all_finite
from ..wire import WireError, WireFormat, decode, decode_many, encode
from .drift import client_drift
from .messages import ClientReply, DivergenceError, Rejection

log = logging.getLogger(__name__)


def _on_host(tree: Any) -> Any:
    """Tensors (in dicts, at any depth) on the host, where the server keeps its state."""
    if isinstance(tree, torch.Tensor):
        return tree.cpu()
    if isinstance(tree, dict):
        return {k: _on_host(v) for k, v in tree.items()}
    return tree


class Server:
    def __init__(
        self,
        initial: State,
        algorithm: Algorithm,
        moving_average: float = 0.9,
        ma_start: int = 1,
        downlink: WireFormat | None = None,
        generator: torch.Generator | None = None,
        optimizer: ServerOptimizer | None = None,
    ) -> None:
        """``optimizer`` defaults to the moving average: SGD with learning rate 1-λ."""
        # Kept on the host, where client updates arrive (decoded from bytes).
        self.model: State = {k: v.detach().float().cpu().clone() for k, v in initial.items()}
        self.shapes = {k: tuple(v.shape) for k, v in self.model.items()}
        self.algorithm = algorithm
        # HeteroFL/SplitMix, or None. Asked once: ``isinstance`` on a runtime-checkable
        # Protocol inspects every member, and the server asks per reply.
        self.submodels = algorithm if isinstance(algorithm, SubModelAlgorithm) else None
        self.optimizer = optimizer or ServerSGD(1.0 - moving_average)
        self.ma_start = ma_start
        self.downlink = downlink or WireFormat()
        self.generator = generator
        self.sent: State | None = None  # the last broadcast's values: the clients' start
        self.drift: float | None = None  # the last round's client drift (``drift.py``)

    def broadcast(self) -> bytes:
        """The message every sampled client receives: Q(w̄) or w̄, in wire format."""
        message = encode(self.model, self.downlink, self.generator)
        self.sent = decode(message)
        return message

    def client_inputs(self) -> bytes | None:
        """What the algorithm sends the sampled clients besides the model (FedGen's
        generator), as float32 wire bytes, or None. It is server-made and full precision:
        the clients round what they compute from it."""
        inputs = self.algorithm.client_inputs()
        return encode(inputs, WireFormat()) if inputs else None

    def receive(self, replies: Sequence[ClientReply]) -> tuple[list[ClientUpdate], list[Rejection]]:
        """Decode and check each reply; a malformed one is rejected with its reason."""
        accepted: list[ClientUpdate] = []
        rejected: list[Rejection] = []
        for reply, state in zip(replies, self._decode(replies), strict=True):
            if isinstance(state, WireError):
                log.warning("client %d: update rejected: %s", reply.client, state)
                rejected.append(Rejection(reply.client, str(state)))
                continue
            update = ClientUpdate(
                reply.client, state, reply.num_samples, reply.train_loss, reply.label_counts
            )
            problem = self.algorithm.check_update(update)
            if problem is not None:
                log.warning("client %d: update rejected: %s", reply.client, problem)
                rejected.append(Rejection(reply.client, problem))
                continue
            accepted.append(update)
        return accepted, rejected

    def _decode(self, replies: Sequence[ClientReply]) -> list[State | WireError]:
        """Each reply's state, or why it cannot be used (a client not asked this round
        has no expected shapes); the round's messages are decoded together."""
        expected: list[dict[str, tuple[int, ...]] | WireError] = []
        for reply in replies:
            try:
                expected.append(self.expected_shapes(reply.client))
            except WireError as exc:
                expected.append(exc)
        placed = [
            (r.payload, e) for r, e in zip(replies, expected, strict=True) if isinstance(e, dict)
        ]
        states = iter(decode_many([p for p, _ in placed], [e for _, e in placed]))
        return [e if isinstance(e, WireError) else next(states) for e in expected]

    def expected_shapes(self, client: int) -> dict[str, tuple[int, ...]]:
        """The global shapes, or the sub-model a HeteroFL/SplitMix client was asked to train."""
        if self.submodels is not None:
            return self.submodels.expected_shapes(client)
        return self.shapes

    def downlink_bytes(
        self, sampled: Sequence[int], broadcast: bytes, inputs: bytes | None = None
    ) -> int:
        """Bytes sent to the sampled clients: the broadcast each, or each one's sub-model,
        plus the algorithm's ``inputs`` (``client_inputs``) each.

        A sub-model client receives only its slice of the broadcast model; its size is
        that slice encoded in the downlink format (the values are already on its grid).
        Without compression the size depends on the shapes alone, so each client
        architecture is encoded once.
        """
        extra = len(inputs or b"") * len(sampled)
        if self.submodels is None:
            return len(broadcast) * len(sampled) + extra
        start = decode(broadcast)
        sizes: dict = {}
        total = 0
        for k in sampled:
            key = self.submodels.plans[k].arch if self.downlink.compression == "none" else k
            if key not in sizes:
                sizes[key] = len(self.submodel_payload(k, start))
            total += sizes[key]
        return total + extra

    def submodel_payload(self, client: int, start: State) -> bytes:
        """The slice of the broadcast model ``start`` that a HeteroFL/SplitMix client
        trains this round, in the downlink format: its values are on that grid already,
        so rounding to nearest sends them unchanged."""
        if self.submodels is None:
            raise TypeError(f"{self.algorithm.name} sends every client the whole model")
        plan = self.submodels.plans[client]
        return encode(plan.extract(start), replace(self.downlink, rounding="nearest"))

    def update(self, round_: int, replies: Sequence[ClientReply]) -> list[Rejection]:
        """One round on the server: decode, aggregate what survived, step the global model."""
        accepted, rejected = self.receive(replies)
        self.drift = None
        if accepted:
            self.step(round_, accepted)
        else:
            log.warning("round %d: no client update survived; global model unchanged", round_)
        return rejected

    def step(self, round_: int, updates: Sequence[ClientUpdate]) -> None:
        """Fold one round's client models into the global model (rounds count from 1)."""
        if self.submodels is None and self.sent is not None:  # sub-models differ in shape
            self.drift = client_drift(self.sent, [u.state for u in updates])
        if self.submodels is not None:
            aggregate = self.submodels.aggregate_into(self.model, updates)
        else:  # FedFTG fine-tunes the aggregate on the training device
            aggregate = _on_host(self.algorithm.aggregate(updates))
        bad = [k for k, v in aggregate.items() if not all_finite(v)]
        if bad:
            raise DivergenceError(f"round {round_}: aggregated model holds NaN/Inf in {bad[:3]}")
        if round_ > self.ma_start:
            self.model = self.optimizer.step(self.model, aggregate)
        else:  # up to the start round the aggregate is taken as it is (and starts the average)
            self.model = aggregate

    def state_dict(self) -> dict:
        """The global model, the server optimizer's buffers and what the algorithm learns
        on the server (FedGen's and FedFTG's generators), for checkpoints."""
        return {
            "model": self.model,
            "optimizer": dict(vars(self.optimizer)),
            "algorithm": self.algorithm.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        # A checkpoint loads onto the training device (``checkpoint.load``).
        self.model = _on_host(state["model"])
        vars(self.optimizer).update(_on_host(state["optimizer"]))
        self.algorithm.load_state_dict(state.get("algorithm", {}))  # older checkpoints: none
