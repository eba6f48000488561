"""Server: float32 aggregation, the moving average and its start round, download quantization."""

from __future__ import annotations

import pytest
import torch

from lpfl.algorithms import ClientUpdate, FedAvg, weighted_mean
from lpfl.engine import DivergenceError, Server
from lpfl.quant import BlockFormat, block_exponents


def _update(value: float, n: int = 10, client: int = 0) -> ClientUpdate:
    return ClientUpdate(client, {"w": torch.full((2, 3), value)}, n, 0.5)


def test_mean_and_sample_weighted_aggregation():
    ups = [_update(1.0, 10), _update(4.0, 30)]
    assert torch.allclose(FedAvg("mean").aggregate(ups)["w"], torch.full((2, 3), 2.5))
    assert torch.allclose(FedAvg("weighted").aggregate(ups)["w"], torch.full((2, 3), 3.25))
    with pytest.raises(ValueError, match="nothing to aggregate"):
        weighted_mean([], [])


def test_moving_average_starts_at_ma_start():
    server = Server({"w": torch.zeros(2, 3)}, FedAvg(), moving_average=0.9, ma_start=1)
    server.update(1, [_update(10.0)])
    assert torch.allclose(server.model["w"], torch.full((2, 3), 10.0)), (
        "round 1 copies the aggregate"
    )
    server.update(2, [_update(0.0)])
    assert torch.allclose(server.model["w"], torch.full((2, 3), 9.0))
    late = Server({"w": torch.zeros(2, 3)}, FedAvg(), moving_average=0.5, ma_start=3)
    for r, v in [(1, 2.0), (2, 4.0), (3, 8.0), (4, 0.0)]:
        late.update(r, [_update(v)])
    assert torch.allclose(late.model["w"], torch.full((2, 3), 4.0))


def test_moving_average_is_fedavg_with_server_lr():
    # Clients start from w̄, so λ·w̄ + (1-λ)·mean(w_k) = w̄ + (1-λ)·mean(w_k - w̄).
    torch.manual_seed(0)
    lam, wbar = 0.9, torch.randn(5)
    server = Server({"w": torch.zeros(5)}, FedAvg(), moving_average=lam)
    server.update(1, [ClientUpdate(0, {"w": wbar}, 1, 0.0)])
    clients = [torch.randn(5) for _ in range(4)]
    server.update(2, [ClientUpdate(i, {"w": c}, 1, 0.0) for i, c in enumerate(clients)])
    pseudo_grad = torch.stack([c - wbar for c in clients]).mean(0)
    assert torch.allclose(server.model["w"], wbar + (1 - lam) * pseudo_grad, atol=1e-6)


def test_no_moving_average_takes_the_aggregate():
    server = Server({"w": torch.zeros(2, 3)}, FedAvg(), moving_average=0.0)
    server.update(1, [_update(3.0)])
    server.update(2, [_update(5.0)])
    assert torch.allclose(server.model["w"], torch.full((2, 3), 5.0))


def test_broadcast_is_quantized_when_download_quantization_is_on():
    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 3)
    fmt = BlockFormat(6, "BC", "nearest")
    q = Server({"w": w}, FedAvg(), download=fmt).broadcast()["w"]
    step = torch.exp2((block_exponents(w, "BC") - 4).float())
    assert torch.equal(q / step, (q / step).round()) and not torch.equal(q, w)
    assert torch.equal(Server({"w": w}, FedAvg()).broadcast()["w"], w)


def test_non_finite_aggregate_stops_the_run():
    server = Server({"w": torch.zeros(2, 3)}, FedAvg())
    with pytest.raises(DivergenceError, match="round 4"):
        server.update(4, [_update(float("nan"))])
