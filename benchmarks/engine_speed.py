"""Seconds per round, sequential vs vectorized engine, at 32 bits and at 8 bits + moving average.

    .venv/bin/python benchmarks/engine_speed.py                 # digits demo settings (CPU)
    .venv/bin/python benchmarks/engine_speed.py --pairs 5       # the same, 5 alternating pairs
    .venv/bin/python benchmarks/engine_speed.py --paper fmnist  # the paper's setting, for a GPU

Prints one JSON object; ratios are measured in the same process, one setting after
the other, so compare those rather than absolute times across machines. Each round's
time is split into client training (``train``) and the rest (wire encoding, server
aggregation, evaluation). On CUDA the ablations show what a CUDA graph of the step,
fused rounding, TF32 tensor cores and the fused GroupNorm + ReLU kernels each buy, and
what lpfl's own stacked rules for the input convolution and for pooling buy over
torch's (``TORCH_RULES``), and what a rule lpfl does not use yet would
(``CANDIDATE_RULES``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from provenance import provenance
from torch import nn

from lpfl.cli import DEMO_SETTINGS
from lpfl.config import make_config
from lpfl.engine import client, run_simulation, vectorized
from lpfl.models.input_conv import InputConv2d
from lpfl.models.pool import AvgPool2x2

# 8 bits rounds through the fused kernel, as a long run does by default on any device
# (the first, compiling round is left out of the median and reported on its own).
VARIANTS = {
    "32bit": dict(bits=32, moving_average=0.0),
    "8bit_ma": dict(bits=8, moving_average=0.9, fused_quant="on"),
}
# On the CPU, both engines again with eager rounding (what a short run uses).
CPU_VARIANTS = {"8bit_ma_eager": dict(VARIANTS["8bit_ma"], fused_quant="off")}
# On CUDA: the vectorized step without each speed-up (first the CUDA graph of the step,
# ``engine/step_graph.py``, at both settings), and 32 bits on TF32 for reference.
ABLATIONS = {
    "8bit_ma_no_cuda_graph": dict(VARIANTS["8bit_ma"], cuda_graph=False),
    "32bit_no_cuda_graph": dict(VARIANTS["32bit"], cuda_graph=False),
    "8bit_ma_eager_rounding": dict(VARIANTS["8bit_ma"], fused_quant="off"),
    "8bit_ma_no_tf32": dict(VARIANTS["8bit_ma"], tf32="off"),
    "8bit_ma_torch_norm_relu": dict(VARIANTS["8bit_ma"], fused_norm=False),
    "32bit_tf32": dict(VARIANTS["32bit"], tf32="on"),
}
# On CUDA: the vectorized rows again with cuDNN's autotuner on (lpfl leaves it off: it may
# pick different convolution algorithms from one process to the next). Its first round
# tunes, so the median shows what it would buy a long run.
AUTOTUNED = {f"{name}_cudnn_benchmark": variant for name, variant in VARIANTS.items()}


# On CUDA: lpfl's own rule for a layer over a stack of clients, each replaced by torch's
# (run under vmap) to show what it buys: the input convolution (``models/input_conv.py``)
# and 2x2 average pooling (``models/pool.py``); GroupNorm + ReLU has a setting of its own.
TORCH_RULES: dict[str, tuple[type[nn.Module], Callable]] = {
    "grouped_input_conv": (InputConv2d, nn.Conv2d.forward),
    "torch_pooling": (AvgPool2x2, lambda self, x: F.avg_pool2d(x, 2)),
}


# On CUDA: a rule lpfl does not use yet, at both settings, for the next decision: the
# input layer's im2col (its backward's col2im now strided adds, not F.fold's kernel per
# image) for the ConvNet's hidden convolutions, which torch runs as grouped ones, slow in
# float32 (stage 2: 11.7 ms a step, 2.0 with TF32; gpu-h200-2026-11-27b/stacked-conv-after).
CANDIDATE_RULES: dict[str, tuple[type[nn.Module], Callable]] = {
    "im2col_hidden_convs": (nn.Conv2d, InputConv2d.forward),
}


@contextmanager
def torch_rule(layer: type[nn.Module], forward: Callable) -> Iterator[None]:
    own = layer.forward
    layer.forward = forward  # type: ignore[method-assign]
    try:
        yield
    finally:
        layer.forward = own  # type: ignore[method-assign]


def settings(args: argparse.Namespace) -> dict:
    if args.paper:
        return dict(
            dataset=args.paper, data_dir=args.data_dir, model=args.model, clients=80,
            participation=args.participation, batch_size=32, local_epochs=1, alpha=0.04,
            rounds=args.rounds,
        )  # fmt: skip
    return DEMO_SETTINGS | {"rounds": args.rounds}


class TrainClock:
    """Wall time spent inside the engines' ``train_round``, per call."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def wrap(self, method: Callable) -> Callable:
        def timed(*args, **kwargs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            tic = time.perf_counter()
            out = method(*args, **kwargs)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.calls.append(time.perf_counter() - tic)
            return out

        return timed


def measure(cfg_kwargs: dict, clock: TrainClock) -> dict[str, float]:
    """Median seconds per round (round 1, which compiles and warms up, left out)."""
    clock.calls.clear()
    rec = run_simulation(make_config(**cfg_kwargs), progress=False, log=lambda _m: None)
    return {
        "round": round(statistics.median(r.seconds for r in rec.rounds[1:]), 4),
        "train": round(statistics.median(clock.calls[1:]), 4),
        "first_round": round(rec.rounds[0].seconds, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper", choices=("fmnist", "cifar10"))
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument(
        "--model", choices=("convnet", "mlp"), default="convnet",
        help="with --paper: the paper's ConvNet, or the MLP (what a CPU can train at that size)",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument(
        "--participation", type=float, default=0.4, help="with --paper: clients per round"
    )
    parser.add_argument(
        "--sequential-rounds", type=int, help="fewer rounds for the slow engine (0: skip it)"
    )
    parser.add_argument(
        "--pairs", type=int, default=1,
        help="measure each engine pair this many times, alternating, and report the median "
        "ratio (a shared CPU's speed drifts by tens of percent from minute to minute)",
    )  # fmt: skip
    parser.add_argument(
        "--gpu-rows",
        help="comma-separated names of the CUDA-only rows to measure after the engine pairs "
        "(default: all of TORCH_RULES, CANDIDATE_RULES, ABLATIONS and AUTOTUNED)",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", help="also write the results here after every measurement")
    args = parser.parse_args()
    clock = TrainClock()
    for engine in (client.LocalTrainer, vectorized.VectorizedTrainer):
        engine.train_round = clock.wrap(engine.train_round)  # type: ignore[method-assign]
    base = settings(args) | {"device": args.device}
    on_cuda = torch.cuda.is_available() and args.device != "cpu"
    out: dict = {
        "setting": args.paper or "digits-demo",
        "model": base["model"],
        **provenance("cuda" if on_cuda else "cpu"),
        "threads": torch.get_num_threads(),
        "seconds_per_round": {},
    }
    spr = out["seconds_per_round"]

    def save() -> None:  # a time-boxed machine may stop us before the end
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(out, fh, indent=1)

    seq_rounds = {
        "rounds": args.rounds if args.sequential_rounds is None else args.sequential_rounds
    }
    variants = VARIANTS if on_cuda else VARIANTS | CPU_VARIANTS
    # Each engine pair back to back, so the ratio compares like with like on a machine
    # whose speed drifts (a shared CPU); the GPU-only ablations come after.
    for name, variant in variants.items():
        ratios = []
        for _ in range(args.pairs):
            vec = measure(base | variant | {"engine": "vectorized"}, clock)
            spr[f"vectorized_{name}"] = vec
            save()
            if not seq_rounds["rounds"]:
                break
            seq = measure(base | variant | seq_rounds | {"engine": "sequential"}, clock)
            spr[f"sequential_{name}"] = seq
            ratios.append(round(seq["round"] / vec["round"], 2))
            out[f"speedup_{name}"] = statistics.median(ratios)
            if args.pairs > 1:  # the last pair's times above; every pair's ratio here
                out[f"speedup_{name}_pairs"] = ratios
            save()
        if ratios:
            print(json.dumps({name: out[f"speedup_{name}"]}), file=sys.stderr, flush=True)
    out["8bit_over_32bit_vectorized_train"] = round(
        spr["vectorized_8bit_ma"]["train"] / spr["vectorized_32bit"]["train"], 2
    )
    if on_cuda:
        rows = set(args.gpu_rows.split(",")) if args.gpu_rows else None
        unknown = (rows or set()) - {*TORCH_RULES, *CANDIDATE_RULES, *ABLATIONS, *AUTOTUNED}
        if unknown:
            parser.error(f"unknown --gpu-rows {sorted(unknown)}")

        def wanted(name: str) -> bool:
            return rows is None or name in rows

        def stacked(variant: dict) -> dict[str, float]:
            return measure(base | variant | {"engine": "vectorized"}, clock)

        # First what lpfl's rules buy (at 8 bits), then what a candidate would (at both).
        for rules, measured_at in ((TORCH_RULES, ["8bit_ma"]), (CANDIDATE_RULES, list(VARIANTS))):
            for name, (layer, forward) in rules.items():
                if not wanted(name):
                    continue
                with torch_rule(layer, forward):
                    for setting in measured_at:
                        spr[f"vectorized_{setting}_{name}"] = stacked(VARIANTS[setting])
                        save()
        for name, variant in ABLATIONS.items():
            if wanted(name):
                spr[f"vectorized_{name}"] = stacked(variant)
                save()
        if {"vectorized_8bit_ma_no_cuda_graph", "vectorized_32bit_no_cuda_graph"} <= spr.keys():
            out["8bit_over_32bit_vectorized_train_no_cuda_graph"] = round(
                spr["vectorized_8bit_ma_no_cuda_graph"]["train"]
                / spr["vectorized_32bit_no_cuda_graph"]["train"],
                2,
            )
            save()
        torch.backends.cudnn.benchmark = True
        for name, variant in AUTOTUNED.items():
            if wanted(name):
                spr[f"vectorized_{name}"] = stacked(variant)
                save()
        torch.backends.cudnn.benchmark = False
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
