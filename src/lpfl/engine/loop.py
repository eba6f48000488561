"""The round loop, sequential: one round end to end, readable top to bottom.

config -> data and split -> each sampled client trains in low precision -> the
server aggregates in high precision and updates the moving average -> metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import random_state
from ..config import ConfigError, RunConfig, parse_trackers
from ..data import DATASETS, load_dataset, normalize, summarize_partition
from ..wire import decode, encode_many, fp32_bytes
from . import checkpoint, numerics, setup
from .evaluate import evaluate
from .host_memory import keep_freed_memory
from .laps import Laps
from .messages import ClientData, ClientReply, Rejection
from .recorder import Recorder
from .trackers import open_trackers

logger = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device: cuda was asked for but no CUDA device is available")
    return torch.device(name)


def run_simulation(
    cfg: RunConfig,
    progress: bool = True,
    log: Callable[[str], None] = print,
    label: str = "",
    on_upload: Callable[[int, int, bytes], None] | None = None,
    resume: bool = False,
) -> Recorder:
    """Run one FL experiment; returns the recorder holding every round's metrics.

    Results are written to ``cfg.out`` as they are produced. A diverging run stops
    with status "diverged" and its message; its earlier rounds are kept.
    ``on_upload(round, client, payload)`` sees every client update as sent, for
    traffic studies that need the real bytes. ``resume`` continues from the last
    checkpoint in ``cfg.out`` and gives the rounds an uninterrupted run would.
    """
    device = resolve_device(cfg.device)
    keep_freed_memory()
    with numerics.fused_rounding(False):  # _run turns it on once it knows the engine
        return _run(cfg, device, progress, log, label, on_upload, resume)


def _engine(cfg: RunConfig, wanted: str, ckpt: dict | None) -> str:
    """The engine to train with: a resumed run keeps the one its checkpoint was made with.

    Each engine keeps the clients' optimizer states in its own layout, and ``auto`` may
    pick another engine where a run resumes (a sweep cut off on the CPU, resumed on a
    GPU). Checkpoints from before the engine was recorded name none.
    """
    made_with = wanted if ckpt is None else ckpt.get("engine", wanted)
    if made_with != wanted and cfg.engine != "auto":
        raise ConfigError(
            f"--engine {cfg.engine}: this run's checkpoint was made by the {made_with} "
            "engine, whose optimizer states only that engine can continue"
        )
    return made_with


def _run(
    cfg: RunConfig,
    device: torch.device,
    progress: bool,
    log: Callable[[str], None],
    label: str,
    on_upload: Callable[[int, int, bytes], None] | None,
    resume: bool,
) -> Recorder:
    started = Laps()  # start-up: reading the data, then everything up to the first round
    spec = DATASETS[cfg.dataset]
    train, test = load_dataset(cfg.dataset, cfg.resolved_data_dir())
    started.lap("data")
    if cfg.clients > len(train):
        raise ConfigError(
            f"--clients: {cfg.clients} clients but only {len(train)} training samples"
        )
    parts, server_val = setup.split(cfg, train.y, cfg.clients)
    log(summarize_partition(parts, train.y, spec.num_classes))
    data = {"train_samples": len(train), "test_samples": len(test), "full_train": spec.full_train}
    if spec.full_train and len(train) < spec.full_train:
        log(f"{cfg.dataset}: {len(train)} training samples, a subset of the official "
            f"{spec.full_train}: results are not comparable with the paper's")  # fmt: skip

    norm = partial(normalize, spec=spec)
    x_train = torch.from_numpy(train.x).to(device)
    y_train = torch.from_numpy(train.y).to(device)
    clients = [ClientData(x_train[idx], y_train[idx]) for idx in map(torch.from_numpy, parts)]
    x_test, y_test = torch.from_numpy(test.x).to(device), torch.from_numpy(test.y).to(device)

    global_model = setup.initial_model(cfg, device)
    worker = setup.new_model(cfg, device)
    quantized_eval = None
    if cfg.eval_quantized:
        # The reference evaluates its low-bit runs with the clients' stochastic activation
        # rounding still on; this reproduces that view beside the proper fp32 one. Its own
        # generator keeps the training's random stream unchanged.
        quantized_eval = setup.new_model(cfg, device)
        setup.policy(cfg).attach(quantized_eval, torch.Generator(device).manual_seed(cfg.seed + 1))
    generator = torch.Generator(device).manual_seed(cfg.seed)
    score = setup.scorer(global_model, x_train[server_val], y_train[server_val], norm)
    algorithm = setup.algorithm(cfg, score, device)
    server = setup.server(cfg, global_model, algorithm, generator)
    uplink = cfg.uplink()
    ckpt = checkpoint.for_run(cfg.out, device, "simulator", resume)
    engine = _engine(cfg, setup.engine_name(cfg, worker, algorithm), ckpt)
    if engine != cfg.engine:
        log(f"--engine {cfg.engine}: training clients with the {engine} engine")
    trainer = setup.trainer(cfg, worker, algorithm, norm, generator, engine)
    values = sum(p.numel() for p in global_model.parameters())
    numerics.use_fused(numerics.fused_wanted(cfg, device, engine, values))
    config = cfg.to_dict() | {
        "device": str(device),
        "data_dir": str(cfg.resolved_data_dir()),
        "engine": engine,
    }
    tf32 = numerics.tf32_wanted(cfg, device)
    rng = np.random.default_rng(cfg.seed)
    done, history = 0, None
    if ckpt is not None:
        done, history = ckpt["round"], ckpt["history"]
        server.load_state_dict(ckpt["server"])
        trainer.load_state_dict(ckpt["trainer"])
        rng.bit_generator.state = ckpt["numpy_rng"]
        log(f"resuming after round {done} of {cfg.rounds}")
        if not random_state.restore(generator, ckpt["torch_generator"], cfg.seed + done):
            log("the checkpoint was made on another kind of device: rounding noise and "
                "batch order continue from a new random stream")  # fmt: skip
    trackers = open_trackers(parse_trackers(cfg.trackers), Path(cfg.out or "."), config)
    recorder = Recorder(cfg.out, config, fp32_bytes(server.model), history, trackers, data)
    started.lap("setup")
    recorder.describe_session(**{f"{k}_seconds": round(v, 3) for k, v in started.seconds.items()})

    def save_checkpoint(rnd: int) -> None:
        checkpoint.save(
            cfg.out,
            {
                "round": rnd,
                "runtime": "simulator",
                "engine": engine,
                "history": recorder.state_dict(),
                "server": server.state_dict(),
                "trainer": trainer.state_dict(),
                "numpy_rng": rng.bit_generator.state,
                "torch_generator": generator.get_state(),
            },
        )

    rounds = range(done + 1, cfg.rounds + 1)
    bar = tqdm(rounds, desc=label or "rounds", disable=not progress, initial=done, total=cfg.rounds)
    with checkpoint.finishing(recorder, cfg.out), bar:
        for rnd in bar:
            laps = Laps()
            sampled = sorted(rng.choice(cfg.clients, cfg.clients_per_round, replace=False).tolist())
            broadcast = server.broadcast()
            inputs = server.client_inputs()  # counted only: the simulator's clients share it
            # Every sampled client receives the same bytes, and trains where the data lives.
            start = {name: t.to(device) for name, t in decode(broadcast).items()}
            replies, dropped = [], []
            laps.lap("server")
            with numerics.tensor_cores(tf32), numerics.fused_norm(cfg.fused_norm):
                results = trainer.train_round(sampled, start, [clients[k] for k in sampled])
            laps.lap("train")
            updates = [r.state for r in results if not isinstance(r, Rejection)]
            payloads = iter(encode_many(updates, uplink))  # in the order of ``results``
            for result in results:
                # A client whose training blew up, or whose update cannot be sent, is
                # dropped: one client must not end the run.
                payload = result.reason if isinstance(result, Rejection) else next(payloads)
                if not isinstance(payload, bytes):
                    logger.warning("round %d: client %d dropped: %s", rnd, result.client, payload)
                    dropped.append(Rejection(result.client, str(payload)))
                    continue
                if on_upload is not None:
                    on_upload(rnd, result.client, payload)
                replies.append(
                    ClientReply(
                        result.client,
                        payload,
                        result.num_samples,
                        result.train_loss,
                        result.label_counts,
                    )
                )
            laps.lap("upload")
            rejected = dropped + server.update(rnd, replies)
            laps.lap("server")
            for r in rejected:
                recorder.reject(rnd, r.client, r.reason)
            evaluated = quantized = None
            if rnd % cfg.eval_every == 0 or rnd == cfg.rounds:
                evaluated = setup.evaluate_global(
                    global_model, server.model, x_test, y_test, norm, rnd
                )
                if quantized_eval is not None:
                    quantized_eval.load_state_dict(server.model)
                    quantized = evaluate(quantized_eval, x_test, y_test, norm)
            laps.lap("eval")
            metrics = setup.round_metrics(
                rnd, evaluated, laps.total(), len(sampled), replies, len(rejected), broadcast,
                quantized, server.downlink_bytes(sampled, broadcast, inputs), phases=laps.seconds,
                client_drift=server.drift,
            )  # fmt: skip
            recorder.record(metrics)
            acc, loss, train_loss = metrics.test_accuracy, metrics.test_loss, metrics.train_loss
            if acc is not None:
                bar.set_postfix(acc=f"{acc:.4f}", loss=f"{loss:.3f}", train=f"{train_loss:.3f}")
            if cfg.out and cfg.checkpoint_every and rnd % cfg.checkpoint_every == 0:
                save_checkpoint(rnd)
    return recorder
