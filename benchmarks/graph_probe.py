"""What a CUDA graph of the vectorized training step buys: ms per step, eager vs replayed.

    python benchmarks/graph_probe.py                   # a GPU: the paper's CIFAR-10 step
    python benchmarks/graph_probe.py --clients 2 --batch 4 --steps 2   # a CPU smoke run

On the H200 an 8-bit round of the paper's ConvNet trains in 440 ms while its kernels take
219 ms (``results/gpu-h200-2026-11-27b``): the GPU waits for the host, which launches
some hundreds of kernels a step through ``vmap``, autograd and the rounding calls. A
CUDA graph replays a captured step's launches without the host. This captures one
step of the vectorized engine (gather and normalise a batch, forward, backward, round
the gradients, Adam, round the weights) for 32 clients x batch 32 and compares it with
the same step run eagerly:

- time per step, eager vs replayed, at 32 bits and at 8 bits + the moving average's
  settings (fused rounding, TF32);
- with round-to-nearest, whether N replays leave the weights and Adam's moments exactly
  where N eager steps leave them (the same kernels, so they should);
- anything that breaks the capture (a host sync, a generator the graph does not know),
  reported instead of raised, so the slot goes on.

Every client takes a batch at every step here, as in the paper's balanced split (the
engine runs the last, partial steps of unequal clients eagerly). On the CPU only the
eager step runs. Prints one JSON object. Its answer on the H200 (2026-11-27,
``results/gpu-h200-2026-11-27c``): 25.2 ms eager, 11.2 ms replayed at 8 bits; 20.2 and
18.9 ms at 32 bits; replays equal eager steps. That made ``engine/step_graph.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import traceback
from collections.abc import Callable

import torch
from provenance import provenance
from synthetic import STEP_SETTINGS, random_clients, run_numerics, vectorized_trainer

from lpfl.config import make_config
from lpfl.data import DATASETS
from lpfl.engine.step_graph import WARMUP_STEPS, CudaGraphs


class Probe:
    """One vectorized step over fixed tensors: the batch indices are read from
    ``self.index``, which a replay's caller refills, so a captured step sees new data."""

    def __init__(self, cfg, device: torch.device, clients: int, batch: int, samples: int):
        self.trainer, model = vectorized_trainer(cfg, device)
        spec = DATASETS[cfg.dataset]
        image = (spec.channels, spec.size, spec.size)
        data = random_clients(clients, samples, image, spec.num_classes, device)
        self.x, self.y = torch.cat([d.x for d in data]), torch.cat([d.y for d in data])
        start = model.state_dict()
        self.params = {
            n: start[n].unsqueeze(0).repeat(clients, *([1] * start[n].ndim))
            for n, _ in model.named_parameters()
        }
        self.state = self.trainer.stacked_optimizer.init_state(self.params)
        self.step_fn = self.trainer.stacked_optimizer.bind(self.params, self.state)
        self.weight = torch.ones(clients, batch, device=device)
        self.counts = torch.zeros(clients, spec.num_classes, device=device)
        self.index = torch.zeros(clients, batch, dtype=torch.long, device=device)
        self.active = list(range(clients))
        self.clients, self.batch, self.samples = clients, batch, samples

    def next_batch(self, s: int) -> None:
        """Client k's samples s*batch ... (wrapping), into the fixed index tensor."""
        offsets = torch.arange(self.clients, device=self.index.device).view(-1, 1) * self.samples
        within = torch.arange(self.batch, device=self.index.device) + s * self.batch
        self.index.copy_(offsets + within % self.samples)

    def step(self) -> torch.Tensor:
        """The engine's own step (``VectorizedTrainer._step``), on the fixed tensors."""
        return self.trainer._step(
            self.params, self.step_fn, self.active, self.x, self.y, self.index, self.weight,
            self.counts,
        )  # fmt: skip

    def snapshot(self) -> list[torch.Tensor]:
        return [v.clone() for v in (*self.params.values(), *self.state.values())]


def timed(run: Callable[[int], None], steps: int, cuda: bool) -> float:
    """Median ms of ``run(s)`` over steps, the GPU drained after each."""
    times = []
    for s in range(steps):
        if cuda:
            torch.cuda.synchronize()
        tic = time.perf_counter()
        run(s)
        if cuda:
            torch.cuda.synchronize()
        times.append((time.perf_counter() - tic) * 1e3)
    return round(statistics.median(times), 3)


def capture(probe: Probe) -> Callable[[], torch.Tensor]:
    """The step captured as the engine captures it (``engine/step_graph.CudaGraphs``),
    after the engine's eager warm-up steps; returns the replay."""
    graphs = CudaGraphs(probe.trainer.generator)
    for s in range(WARMUP_STEPS):
        probe.next_batch(s)
        graphs.warm(probe.step)
    return graphs.capture(probe.step)


def measure(cfg, device, args) -> dict:
    cuda = device.type == "cuda"
    row: dict = {}
    probe = Probe(cfg, device, args.clients, args.batch, args.samples)
    with run_numerics(cfg, device):
        probe.next_batch(0)
        probe.step()  # compiles the kernels

        def eager(s: int) -> None:
            probe.next_batch(s)
            probe.step()

        row["eager_ms"] = timed(eager, args.steps, cuda)
        if not cuda:
            return row
        try:
            replay_step = capture(probe)
        except Exception as exc:  # what breaks the capture is the finding
            row["capture_error"] = "".join(traceback.format_exception_only(exc)).strip()
            return row

        def replay(s: int) -> None:
            probe.next_batch(s)
            replay_step()

        row["graph_ms"] = timed(replay, args.steps, cuda)
        row["speedup"] = round(row["eager_ms"] / row["graph_ms"], 2)
        if cfg.rounding == "nearest":  # the same kernels: replays should equal eager steps
            before = probe.snapshot()
            for s in range(3):
                eager(s)
            after_eager = probe.snapshot()
            live = [*probe.params.values(), *probe.state.values()]
            for t, b in zip(live, before, strict=True):  # back to the start, in place
                t.copy_(b)
            for s in range(3):
                replay(s)
            after_graph = probe.snapshot()
            row["replays_equal_eager_steps"] = all(
                torch.equal(a, b) for a, b in zip(after_eager, after_graph, strict=True)
            )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--samples", type=int, default=625, help="per client")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per setting")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    out: dict = {**provenance(device), "clients": args.clients, "batch": args.batch, "ms": {}}
    for name, setting in STEP_SETTINGS.items():
        cfg = make_config(
            dataset="cifar10", model="convnet", batch_size=args.batch, local_epochs=1,
            rounds=200, device=args.device, **setting,
        )  # fmt: skip
        try:
            out["ms"][name] = measure(cfg, device, args)
        except Exception as exc:
            out["ms"][name] = {"error": "".join(traceback.format_exception_only(exc)).strip()}
        print(json.dumps({name: out["ms"][name]}), flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
