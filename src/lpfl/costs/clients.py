"""What each client of a configured run costs: bytes on the wire and training memory.

The clients are built exactly as a run builds them (``engine.setup``): a FedAvg
client holds the whole model; a HeteroFL/SplitMix client the sub-model its plan
gives it. Bytes come from lpfl's wire format (``wire.encode``), headers and
per-block exponents included; they depend on the tensors' shapes and the format,
not on their values.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from ..algorithms import Algorithm, State, SubModelAlgorithm
from ..config import RunConfig
from ..data import DATASETS, normalize
from ..engine import setup
from ..engine.client import LocalTrainer, OptimizerSpec
from ..engine.messages import ClientData
from ..quant import PrecisionPolicy
from ..wire import encode
from .memory import MemoryBreakdown, analytic_memory, optimizer_slots, peak_memory


@dataclass(frozen=True)
class ClientCost:
    arch: Hashable  # the client's model (None: the whole model)
    params: int
    upload_bytes: int
    download_bytes: int
    analytic: MemoryBreakdown
    measured: int | None  # bytes: fp32 weights + peak allocated during one local epoch


def _synthetic_data(cfg: RunConfig, samples: int, device: torch.device) -> ClientData:
    """Random images and labels: memory and bytes depend on shapes, not on values."""
    spec = DATASETS[cfg.dataset]
    gen = torch.Generator().manual_seed(cfg.seed)
    x = torch.randint(0, 256, (samples, spec.channels, spec.size, spec.size), generator=gen)
    y = torch.randint(0, spec.num_classes, (samples,), generator=gen)
    return ClientData(x.to(torch.uint8).to(device), y.to(device))


def client_costs(
    cfg: RunConfig, device: torch.device, samples: int, measure: bool = True
) -> list[ClientCost]:
    """One entry per client of ``cfg`` (clients sharing a model share one computation).

    ``samples``: the local data size the measured epoch runs over (e.g. 50000/80 for
    CIFAR-10 with 80 clients).
    """
    global_model = setup.initial_model(cfg, device)
    start = {k: v.detach() for k, v in global_model.state_dict().items()}
    algo = setup.algorithm(cfg)
    policy = setup.policy(cfg)
    norm = partial(normalize, spec=DATASETS[cfg.dataset])
    data = _synthetic_data(cfg, samples, device)
    cache: dict[Hashable, ClientCost] = {}
    out = []
    for k in range(cfg.clients):
        if isinstance(algo, SubModelAlgorithm):
            plan = algo.plan(k)
            arch, make, state = (
                plan.arch,
                partial(algo.client_model, plan.arch),
                plan.extract(start),
            )
        else:
            arch, make, state = None, partial(setup.new_model, cfg, device), start
        if arch not in cache:
            cache[arch] = _cost(
                cfg, arch, make().to(device), state, algo, policy, norm, data, measure
            )
        out.append(cache[arch])
    return out


def _cost(
    cfg: RunConfig,
    arch: Hashable,
    model: nn.Module,
    state: State,
    algo: Algorithm,
    policy: PrecisionPolicy,
    norm: Callable[[Tensor], Tensor],
    data: ClientData,
    measure: bool,
) -> ClientCost:
    gen = torch.Generator(data.y.device).manual_seed(cfg.seed)
    trainer = LocalTrainer(
        model, policy, algo, OptimizerSpec(cfg.optimizer, cfg.lr, cfg.momentum), norm,
        1, cfg.batch_size, gen, persist=False,
    )  # fmt: skip
    model.load_state_dict(state)
    model.train()
    batch = torch.arange(min(cfg.batch_size, len(data)), device=data.y.device)

    def forward() -> Tensor:
        return algo.client_loss(model, model(norm(data.x[batch])), data.y[batch])

    analytic = analytic_memory(
        model, policy.weight, policy.grad, policy.act,
        optimizer_slots(cfg.optimizer, cfg.momentum), forward,
    )  # fmt: skip
    measured = None
    if measure:
        weights = sum(4 * p.numel() for p in model.parameters())
        measured = weights + peak_memory(lambda: trainer.train(0, state, data, None), data.y.device)
    return ClientCost(
        arch=arch,
        params=sum(p.numel() for p in model.parameters()),
        upload_bytes=len(encode(state, cfg.uplink())),
        download_bytes=len(encode(state, cfg.downlink(), torch.Generator().manual_seed(0))),
        analytic=analytic,
        measured=measured,
    )
