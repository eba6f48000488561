"""Where a vectorized training round spends its time, op by op, in the paper's setting.

    python benchmarks/step_profile.py                             # a GPU: 32 clients x 625
    python benchmarks/step_profile.py --clients 2 --samples 64    # a CPU smoke run

One round of client training (the paper's ConvNet on CIFAR-10-shaped input, batch 32,
one local epoch) is profiled with ``torch.profiler`` after a warm-up round that
compiles and tunes, at 32 bits and at 8 bits with the moving average's settings and
everything ``auto`` turns on there (fused rounding, TF32). Random uint8 images stand in
for the data: what an op costs does not depend on the pixel values. Prints, per
setting, the round's wall time and the ops that take the most device time (CPU time
without a GPU), so the next speed-up can go where the time is; on a GPU also the ops
that take the most host time: on the H200 an 8-bit round's kernels came to half its
wall time once the stack rules landed (``results/gpu-h200-2026-11-27b``), so the host
decides its speed there.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import io
import pstats
import sys
import time

import torch
from synthetic import random_clients, run_numerics, vectorized_trainer

from lpfl.config import make_config
from lpfl.data import DATASETS


def one_round(cfg, device: torch.device, clients: int, samples: int):
    """A function that trains one round of ``clients`` clients from the model's start."""
    trainer, model = vectorized_trainer(cfg, device)
    spec = DATASETS[cfg.dataset]
    image = (spec.channels, spec.size, spec.size)
    data = random_clients(clients, samples, image, spec.num_classes, device)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    return lambda: trainer.train_round(list(range(clients)), start, data)


def python_profile(train, cuda: bool, rows: int) -> str:
    """cProfile of one round: which Python functions (lpfl's, torch's wrappers, Triton's
    launcher) the host spends its time in, where torch's profiler sees only ops."""
    profiler = cProfile.Profile()
    profiler.enable()
    train()
    if cuda:
        torch.cuda.synchronize()
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(rows)
    return text.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--samples", type=int, default=625, help="per client")
    parser.add_argument("--rows", type=int, default=25, help="ops listed per setting")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--python", action="store_true", help="also profile one round's Python functions"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    name = torch.cuda.get_device_name() if cuda else "CPU"
    print(f"# {name}, torch {torch.__version__}, {datetime.date.today().isoformat()}")
    print(f"# benchmarks/step_profile.py {' '.join(sys.argv[1:])}")
    sort = "self_device_time_total" if cuda else "self_cpu_time_total"
    for label, bits, average in (("32 bits", 32, 0.0), ("8 bits + moving average", 8, 0.9)):
        cfg = make_config(
            dataset="cifar10", model="convnet", bits=bits, moving_average=average,
            batch_size=32, local_epochs=1, rounds=200, device=args.device,
        )  # fmt: skip
        train = one_round(cfg, device, args.clients, args.samples)
        with run_numerics(cfg, device):
            train()  # warm-up: compiles kernels, fills caches
            if cuda:
                torch.cuda.synchronize()
            activities = [torch.profiler.ProfilerActivity.CPU]
            if cuda:
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            tic = time.perf_counter()
            with torch.profiler.profile(activities=activities) as prof:
                train()
                if cuda:
                    torch.cuda.synchronize()
            seconds = time.perf_counter() - tic
            tic = time.perf_counter()
            train()
            if cuda:
                torch.cuda.synchronize()
            plain = time.perf_counter() - tic
            python = python_profile(train, cuda, args.rows) if args.python else ""
        print(f"\n## {label}: one round of {args.clients} clients x {args.samples} samples")
        print(f"wall {seconds:.3f} s under the profiler, {plain:.3f} s without it")
        table = prof.key_averages().table(sort_by=sort, row_limit=args.rows)
        print(table)
        if cuda:  # a round whose kernels leave the GPU idle is bound by the host's work
            print(f"\n### {label}: the same ops by host (CPU) time")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
        if python:
            print(f"\n### {label}: Python functions by own time over one more round")
            print(python)


if __name__ == "__main__":
    main()
