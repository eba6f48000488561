"""A vectorized trainer and random client data, for the benchmarks that time a training
step or round with no dataset at hand (step_profile, host_overhead, graph_probe): what an
op costs does not depend on the pixel values.

Benchmarks run as scripts from the repository root, so this module is imported by its
plain name, like ``provenance``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

import torch
from torch import Tensor, nn

from lpfl.config import RunConfig
from lpfl.data import DATASETS, normalize
from lpfl.engine import ClientData, numerics, setup
from lpfl.engine.vectorized import VectorizedTrainer


def vectorized_trainer(
    cfg: RunConfig,
    device: torch.device,
    model: nn.Module | None = None,
    norm: Callable[[Tensor], Tensor] | None = None,
) -> tuple[VectorizedTrainer, nn.Module]:
    """The vectorized engine's trainer for ``cfg``, seeded by its seed, and the model it
    trains (``cfg``'s own unless given, normalised as ``cfg``'s dataset unless given)."""
    torch.manual_seed(cfg.seed)
    model = setup.new_model(cfg, device) if model is None else model
    algo = setup.algorithm(cfg, device=device)
    gen = torch.Generator(device).manual_seed(cfg.seed)
    norm = partial(normalize, spec=DATASETS[cfg.dataset]) if norm is None else norm
    trainer = setup.trainer(cfg, model, algo, norm, gen, "vectorized")
    return trainer, model  # type: ignore[return-value]


def random_clients(
    clients: int, samples: int, image: tuple[int, ...], classes: int, device: torch.device
) -> list[ClientData]:
    """Each client's ``samples`` uint8 images of shape ``image`` and labels, drawn from
    torch's global generator."""
    return [
        ClientData(
            torch.randint(0, 256, (samples, *image), dtype=torch.uint8, device=device),
            torch.randint(0, classes, (samples,), device=device),
        )
        for _ in range(clients)
    ]


# The settings a GPU check or probe of the vectorized step runs (graph_probe,
# tests/cuda_graph_check.py): 32 bits, and 8 bits + the moving average's settings with
# stochastic rounding and rounding to nearest (deterministic, for value checks).
STEP_SETTINGS = {
    "32 bits": dict(bits=32, moving_average=0.0),
    "8 bits + average": dict(bits=8, moving_average=0.9),
    "8 bits + average, nearest rounding": dict(bits=8, moving_average=0.9, rounding="nearest"),
}


@contextmanager
def run_numerics(cfg: RunConfig, device: torch.device) -> Iterator[None]:
    """The device arithmetic a run of ``cfg`` trains its vectorized clients under."""
    values = sum(p.numel() for p in setup.new_model(cfg, torch.device("cpu")).parameters())
    with (
        numerics.fused_rounding(numerics.fused_wanted(cfg, device, "vectorized", values)),
        numerics.tensor_cores(numerics.tf32_wanted(cfg, device)),
        numerics.fused_norm(cfg.fused_norm),
    ):
        yield
