"""The server side of a Flower run, the counterpart of ``lpfl.engine.run_simulation``.

It builds what the simulator builds (data, initial model, ABAvg's validation split,
``Server``, ``Recorder``), waits for the federation to fill, and lets Flower's
``Strategy.start`` drive the rounds through ``LowPrecisionStrategy``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial

import torch
from flwr.app import ArrayRecord
from flwr.serverapp import Grid

from ..config import RunConfig
from ..data import DATASETS, load_dataset, normalize
from ..engine import DivergenceError, Recorder, resolve_device, setup
from ..wire import fp32_bytes
from .settings import FlowerSettings
from .strategy import LowPrecisionStrategy

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
    model = setup.initial_model(cfg, device)  # the simulator's initial model, same seed
    # ABAvg's validation split, carved as the simulator and every node carve it; the
    # nodes' partitions exclude it. Empty, and unused, for the other algorithms.
    _, held = setup.split(cfg, train.y, cfg.clients)
    x_val, y_val = (torch.from_numpy(a[held]).to(device) for a in (train.x, train.y))
    score = setup.scorer(setup.new_model(cfg, device), x_val, y_val, norm)
    generator = torch.Generator(device).manual_seed(cfg.seed)
    server = setup.server(cfg, model, setup.algorithm(cfg, score, device), generator)
    config = cfg.to_dict() | {"device": str(device), "data_dir": str(cfg.resolved_data_dir())}
    recorder = Recorder(cfg.out, config, fp32_bytes(server.model))

    def evaluate(rnd: int) -> tuple[float, float] | None:
        if rnd % cfg.eval_every and rnd != cfg.rounds:
            return None
        evaluated = setup.evaluate_global(model, server.model, x_test, y_test, norm, rnd)
        log_line(f"round {rnd}: accuracy {evaluated[0]:.4f}, loss {evaluated[1]:.4f}")
        return evaluated

    strategy = LowPrecisionStrategy(cfg, server, recorder, evaluate, flower)
    wait_for_nodes(grid, cfg.clients, flower.round_timeout)
    try:
        strategy.start(
            grid,
            ArrayRecord(torch_state_dict=server.model),
            num_rounds=cfg.rounds,
            timeout=flower.round_timeout,
            evaluate_fn=strategy.evaluate_fn,
        )
    except DivergenceError as exc:
        recorder.finish("diverged", str(exc))
        raise
    except BaseException as exc:  # a bug or an interrupt: say so in results.json, keep rounds
        recorder.finish("failed", f"{type(exc).__name__}: {exc}")
        raise
    recorder.finish()
    return recorder
