"""The server's round loop over a Flower Grid, the counterpart of ``lpfl.engine.run_simulation``.

Each round: sample the connected nodes, send them ``Server.broadcast()``, collect the
replies, let ``Server.update`` decode, reject and aggregate them (ABAvg scoring them on
the server's validation split, as in the simulator), evaluate the global model on the
test set, optionally have the nodes evaluate it on their own data (``client-eval-every``)
and record the round. A plain loop over the Grid rather than a Flower Strategy, because
Flower's ``Strategy.start`` hands arrays between rounds and evaluates those, while lpfl
broadcasts Q(w̄) but evaluates and keeps the fp32 w̄.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import torch
from flwr.app import Message, MessageType, RecordDict
from flwr.serverapp import Grid

from ..algorithms import SIMULATOR_ONLY, SUBMODEL_ALGORITHMS
from ..config import ConfigError, RunConfig
from ..data import DATASETS, load_dataset, normalize
from ..engine import DivergenceError, Recorder, resolve_device, setup
from ..wire import fp32_bytes
from . import protocol, replies, settings
from .evaluation import evaluate_on_nodes
from .settings import FlowerSettings

log = logging.getLogger(__name__)

_POLL_SECONDS = 1.0


def wait_for_nodes(grid: Grid, count: int, timeout: float) -> list[int]:
    """Block until ``count`` nodes are connected; a federation that never fills is an error."""
    deadline = time.monotonic() + timeout
    while len(nodes := sorted(grid.get_node_ids())) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(nodes)} of {count} nodes connected within {timeout} s")
        time.sleep(_POLL_SECONDS)
    return nodes


def _messages(grid_nodes: Sequence[int], content: RecordDict, kind: str) -> list[Message]:
    return [Message(content, dst_node_id=node, message_type=kind) for node in grid_nodes]


def run_rounds(
    grid: Grid,
    cfg: RunConfig,
    flower: FlowerSettings,
    log_line: Callable[[str], None] = log.info,
) -> Recorder:
    """Run ``cfg.rounds`` rounds over the nodes on ``grid``; returns the filled Recorder."""
    device = resolve_device(cfg.device)
    spec = DATASETS[cfg.dataset]
    norm = partial(normalize, spec=spec)
    train, test = load_dataset(cfg.dataset, cfg.resolved_data_dir())
    x_test, y_test = torch.from_numpy(test.x).to(device), torch.from_numpy(test.y).to(device)
    if cfg.algorithm in SUBMODEL_ALGORITHMS:  # each node would need its own sub-model message
        raise ConfigError(f"--algorithm: {cfg.algorithm} trains sub-models, not on Flower yet")
    if cfg.algorithm in SIMULATOR_ONLY:
        raise ConfigError(
            f"--algorithm: {cfg.algorithm} needs per-class counts"
            " (and FedGen its generator) in the messages, not on Flower yet"
        )
    model = setup.initial_model(cfg, device)  # the simulator's initial model, same seed
    # ABAvg's validation split, carved as the simulator and every node carve it; the
    # nodes' partitions exclude it. Empty, and unused, for the other algorithms.
    _, held = setup.split(cfg, train.y, cfg.clients)
    x_val, y_val = (torch.from_numpy(a[held]).to(device) for a in (train.x, train.y))
    score = setup.scorer(setup.new_model(cfg, device), x_val, y_val, norm)
    generator = torch.Generator(device).manual_seed(cfg.seed)
    server = setup.server(cfg, model, setup.algorithm(cfg, score), generator)
    config = cfg.to_dict() | {"device": str(device), "data_dir": str(cfg.resolved_data_dir())}
    recorder = Recorder(cfg.out, config, fp32_bytes(server.model))
    rng = np.random.default_rng(cfg.seed)
    wait_for_nodes(grid, cfg.clients, flower.round_timeout)
    try:
        for rnd in range(1, cfg.rounds + 1):
            tic = time.perf_counter()
            nodes = sorted(grid.get_node_ids())  # whoever is still connected
            k = min(cfg.clients_per_round, len(nodes))
            sampled = [nodes[i] for i in sorted(rng.choice(len(nodes), k, replace=False))]
            broadcast = server.broadcast()
            content = RecordDict(
                {
                    protocol.MODEL_KEY: protocol.to_record(broadcast),
                    protocol.CONFIG_KEY: settings.to_record(cfg, rnd),
                }
            )
            sent = _messages(sampled, content, MessageType.TRAIN)
            answers = grid.send_and_receive(sent, timeout=flower.round_timeout)
            uploads, dropped = replies.collect(rnd, sent, answers, flower.round_timeout)
            rejected = dropped + server.update(rnd, uploads)
            for r in rejected:
                recorder.reject(rnd, r.client, r.reason)
            evaluated = on_clients = None
            if rnd % cfg.eval_every == 0 or rnd == cfg.rounds:
                evaluated = setup.evaluate_global(model, server.model, x_test, y_test, norm, rnd)
                log_line(f"round {rnd}: accuracy {evaluated[0]:.4f}, loss {evaluated[1]:.4f}")
            if flower.client_eval_every and rnd % flower.client_eval_every == 0:
                on_clients = evaluate_on_nodes(grid, server.model, cfg, rnd, flower.round_timeout)
            metrics = setup.round_metrics(
                rnd, evaluated, time.perf_counter() - tic, len(sampled), uploads, len(rejected),
                broadcast, on_clients=on_clients,
            )  # fmt: skip
            recorder.record(metrics)
    except DivergenceError as exc:
        recorder.finish("diverged", str(exc))
        raise
    except BaseException as exc:  # a bug or an interrupt: say so in results.json, keep rounds
        recorder.finish("failed", f"{type(exc).__name__}: {exc}")
        raise
    recorder.finish()
    return recorder
