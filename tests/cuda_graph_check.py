"""On a GPU: the vectorized engine with its step captured as a CUDA graph trains exactly as
without it.

    python tests/cuda_graph_check.py            # needs CUDA; about a minute

``test_step_graph.py`` checks the bookkeeping on the CPU, where a replay reruns the step;
only a GPU can show that the graph itself replays the step: the same kernels on the
same memory, and rounding noise drawn from the trainer's generator at the offsets the
eager calls would use. For the paper's CIFAR-10 ConvNet with unequal clients (so
rounds mix replayed and eager steps), three rounds (the third outgrows the first
graph's data room, so a second graph is made), at 32 bits, at 8 bits with stochastic
rounding and rounding to nearest, and at 8 bits for FedProx, FedGen and SGD with momentum:
each update, loss and saved optimizer state must equal the eager engine's bit for bit
(cuDNN in its deterministic mode), the updates compared after all three rounds (a later
round must not write over them). Two eager runs are compared first: if they differ (a
non-deterministic kernel), the check says so and fails as inconclusive.
Prints one line per setting; exits non-zero on the first failure.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from synthetic import STEP_SETTINGS, random_clients, run_numerics, vectorized_trainer

from lpfl.config import make_config
from lpfl.engine import ClientData
from lpfl.engine.step_graph import CudaGraphs

# Client steps besides FedAvg's with Adam that the engine captures: FedProx reads its anchor,
# which each round copies into the same tensors; FedGen draws generated features from
# round 2 on (a new graph) with weights that change every round; SGD with momentum
# steps its buffers.
OTHER_STEPS = {
    "8 bits + average, FedProx": dict(bits=8, moving_average=0.9, algorithm="fedprox"),
    "8 bits + average, FedGen": dict(bits=8, moving_average=0.9, algorithm="fedgen"),
    "8 bits + average, SGD with momentum": dict(
        bits=8, moving_average=0.9, optimizer="sgd", lr=0.05, momentum=0.9
    ),
}
# Clients per round and their sizes, round by round (batch 32): 4-6 full steps a round,
# then steps where the smaller clients have run out. Round 3 holds more data than round 1.
ROUNDS = [(150, 200, 130, 170, 160, 190), (140, 210, 150, 160, 175, 150), (260, 220, 300) * 2]


def train(cfg) -> tuple[list, dict, int]:
    """Three rounds from the same start; the updates, the saved states, graphs made."""
    device = torch.device("cuda")
    trainer, model = vectorized_trainer(cfg, device)
    if cfg.cuda_graph != isinstance(getattr(trainer.graph, "capturer", None), CudaGraphs):
        sys.exit("the trainer does not follow --cuda-graph")
    torch.manual_seed(1)
    pool = random_clients(12, 300, (3, 32, 32), 10, device)
    start = model.state_dict()
    kept = []
    with run_numerics(cfg, device):
        for r, sizes in enumerate(ROUNDS):
            sampled = list(range(r, r + len(sizes)))
            data = [ClientData(d.x[:n], d.y[:n]) for d, n in zip(pool[r:], sizes, strict=False)]
            results = trainer.train_round(sampled, start, data)
            kept.append([(u.train_loss, u.state) for u in results])
            start = trainer.algorithm.aggregate(results)  # FedGen trains its generator
    made = trainer.graph.captures if trainer.graph is not None else 0
    return kept, {k: v.clone() for k, v in trainer.saved.items()}, made


def differences(a, b) -> float:
    """The largest absolute difference over updates, losses and saved states (0: equal)."""
    (ra, sa, _), (rb, sb, _) = a, b
    worst = 0.0
    for round_a, round_b in zip(ra, rb, strict=True):
        for (la, ua), (lb, ub) in zip(round_a, round_b, strict=True):
            worst = max(worst, abs(la - lb), *(float((ua[k] - ub[k]).abs().max()) for k in ua))
    return max(worst, *(float((sa[k] - sb[k]).abs().max()) for k in sa))


def main() -> None:
    if not torch.cuda.is_available():
        sys.exit("cuda_graph_check needs a CUDA device")
    # cuDNN may pick convolution algorithms that add in a varying order; bit-for-bit
    # comparisons need the same order every time (graph or not).
    torch.backends.cudnn.deterministic = True
    for name, setting in (STEP_SETTINGS | OTHER_STEPS).items():
        cfg = make_config(
            dataset="cifar10", model="convnet", batch_size=32, local_epochs=1, device="cuda",
            seed=4, cuda_graph=False, **setting,
        )  # fmt: skip
        tic = time.perf_counter()
        eager = train(cfg)
        again = differences(eager, train(cfg))
        if again:
            sys.exit(f"{name}: inconclusive, two eager runs differ by {again:.3g}")
        graphed = train(dataclasses.replace(cfg, cuda_graph=True))
        diff = differences(eager, graphed)
        print(
            f"{name}: graph vs eager max difference {diff:.3g}, {graphed[2]} graphs made "
            f"({time.perf_counter() - tic:.1f} s)",
            flush=True,
        )
        if diff or graphed[2] < 2:  # FedGen makes a third, when its clients start drawing
            sys.exit(f"{name}: the captured step does not train as the eager one")
    print("the captured step trains exactly as the eager one")


if __name__ == "__main__":
    main()
