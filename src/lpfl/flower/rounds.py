"""The server side of a Flower run, the counterpart of ``lpfl.engine.run_simulation``.

It builds what the simulator builds (data, initial model, ABAvg's validation split,
``Server``, ``Recorder``), waits for the federation to fill, and lets Flower's
``Strategy.start`` drive the rounds through ``LowPrecisionStrategy``. With ``resume``
it first restores the server's side of the run checkpointed in ``out`` (global
model, server optimizer and algorithm state, sampling and rounding streams, the
rounds recorded); the nodes keep theirs (see node_state).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from functools import partial

import torch
from flwr.app import ArrayRecord
from flwr.serverapp import Grid

from .. import random_state
from ..config import ConfigError, RunConfig, field_defaults
from ..data import DATASETS, load_dataset, normalize
from ..engine import Recorder, checkpoint, resolve_device, setup
from ..sweep.identity import NOT_IDENTITY
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


def check_same_run(saved: dict, cfg: RunConfig) -> None:
    """A resumed run must be the run that was checkpointed: refuse settings that name
    another experiment (a sweep's run identity). The others may change, as a run may
    resume on another host: where data and results lie, the device, and how it
    computes (kernels, CUDA graphs, engine). A setting the checkpoint does not name came
    to lpfl after it was made, and the run had its default, as ``lpfl run --resume``
    takes it."""
    saved = field_defaults() | saved
    now = cfg.to_dict()
    changed = [k for k in now if k not in NOT_IDENTITY and saved.get(k) != now[k]]
    if changed:
        shown = ", ".join(f"{k} = {now[k]!r} here, {saved.get(k)!r} there" for k in changed[:3])
        raise ConfigError(
            f"resume: the run config differs from the checkpointed run's ({shown}); a "
            "resumed run keeps its settings: pass the ones it started with (results.json)"
        )


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
    ckpt = checkpoint.for_run(cfg.out, device, "flower", flower.resume)
    done, history, token = 0, None, uuid.uuid4().hex  # the token names this lpfl run to nodes
    if ckpt is not None:
        check_same_run(ckpt["config"], cfg)
        done, history, token = ckpt["round"], ckpt["history"], ckpt["run_token"]
        server.load_state_dict(ckpt["server"])
        random_state.restore(generator, ckpt["torch_generator"], cfg.seed + done)
        log_line(f"resuming after round {done} of {cfg.rounds} (Flower counts this run's "
                 f"rounds from 1)")  # fmt: skip
    config = cfg.to_dict() | {"device": str(device), "data_dir": str(cfg.resolved_data_dir())}
    recorder = Recorder(cfg.out, config, fp32_bytes(server.model), history)

    def evaluate(rnd: int) -> tuple[float, float] | None:
        if rnd % cfg.eval_every and rnd != cfg.rounds:
            return None
        evaluated = setup.evaluate_global(model, server.model, x_test, y_test, norm, rnd)
        log_line(f"round {rnd}: accuracy {evaluated[0]:.4f}, loss {evaluated[1]:.4f}")
        return evaluated

    def save(rnd: int) -> None:
        checkpoint.save(
            cfg.out,
            {
                "round": rnd,
                "runtime": "flower",
                "config": cfg.to_dict(),
                "run_token": token,
                "history": recorder.state_dict(),
                "server": server.state_dict(),
                "numpy_rng": strategy.rng.bit_generator.state,
                "torch_generator": generator.get_state(),
            },
        )

    saving = save if cfg.out and cfg.checkpoint_every else None
    strategy = LowPrecisionStrategy(cfg, server, recorder, evaluate, flower, token, saving, done)
    if ckpt is not None:
        strategy.rng.bit_generator.state = ckpt["numpy_rng"]
    wait_for_nodes(grid, cfg.clients, flower.round_timeout)
    with checkpoint.finishing(recorder, cfg.out):
        strategy.start(
            grid,
            ArrayRecord(torch_state_dict=server.model),
            num_rounds=cfg.rounds - done,
            timeout=flower.round_timeout,
            evaluate_fn=strategy.evaluate_fn,
        )
    return recorder
