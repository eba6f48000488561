"""The host's own work in one vectorized training step, with the arithmetic made negligible.

    python benchmarks/host_overhead.py                 # a table of 32 and 8 bits
    python benchmarks/host_overhead.py --profile 25    # and the Python functions behind 8 bits

On the H200 an 8-bit round of the paper's ConvNet trains in 440 ms while its kernels take
219 ms (``results/gpu-h200-2026-11-27b``): the GPU waits for the host, which walks the
``vmap``-ed forward, autograd's backward, 48 roundings and the optimizer step. The host's
work does not depend on the tensors' sizes, so this measures it on the CPU: the same
step (every rounding point, every stack rule, the Triton rounding path with lpfl's own
wrapper code) over 4 clients x batch 4 of a width-4 ConvNet on 8x8 inputs, with the
Triton kernels themselves replaced by a copy. What it cannot see is what a CUDA op adds
on top (the driver's launch, the caching allocator), so read it as a lower bound and a
way to compare changes to the host path without a GPU.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import statistics
import time

import torch
from provenance import provenance
from synthetic import random_clients, vectorized_trainer
from torch import Tensor

from lpfl.config import make_config
from lpfl.models.convnet import ConvNet
from lpfl.quant import block, triton_round

CLIENTS, BATCH, STEPS = 4, 4, 20


def copy_kernels(rows: Tensor, seed, bits, shape, block_shape) -> tuple[Tensor, Tensor]:
    """Stands in for the Triton kernels: one copy, as the real path allocates one output."""
    return rows.reshape(shape).clone(), torch.zeros(rows.shape[0])


def one_round(bits: int):
    cfg = make_config(
        dataset="cifar10", bits=bits, moving_average=0.9 if bits < 32 else 0.0,
        batch_size=BATCH, local_epochs=1, device="cpu",
    )  # fmt: skip
    cpu = torch.device("cpu")
    tiny = ConvNet(3, 8, 10, width=4)
    trainer, model = vectorized_trainer(cfg, cpu, tiny, lambda x: x.float() / 255)
    data = random_clients(CLIENTS, BATCH * STEPS, (3, 8, 8), 10, cpu)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    return lambda: trainer.train_round(list(range(CLIENTS)), start, data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", type=int, default=0, help="list this many functions")
    args = parser.parse_args()
    torch.set_num_threads(1)
    block.TRITON_DEVICES = ("cpu",)  # lpfl's CUDA rounding path, on the CPU
    triton_round.fake_quantize = copy_kernels
    block.use_fused(True)
    out: dict = {**provenance("cpu"), "ms_per_step": {}}
    for bits in (32, 8):
        train = one_round(bits)
        train()  # warm-up
        times = []
        for _ in range(args.repeats):
            tic = time.perf_counter()
            train()
            times.append((time.perf_counter() - tic) * 1e3 / STEPS)
        out["ms_per_step"][f"{bits} bits"] = round(statistics.median(times), 2)
        if args.profile and bits < 32:
            profiler = cProfile.Profile()
            profiler.enable()
            train()
            profiler.disable()
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(args.profile)
            print(text.getvalue())
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
