"""Server: float32 aggregation, the moving average, the broadcast, and refusing bad replies."""

from __future__ import annotations

import logging

import pytest
import torch

from lpfl.algorithms import ClientUpdate, FedAvg, weighted_mean
from lpfl.algorithms.server_optimizers import ServerAdam, ServerMomentum, ServerSGD
from lpfl.engine import ClientReply, DivergenceError, Server
from lpfl.quant import block_exponents, block_quantize
from lpfl.wire import WireFormat, decode, encode
from lpfl.wire.frame import seal, unseal

SHAPE = (2, 3)


def _update(value: float, n: int = 10, client: int = 0) -> ClientUpdate:
    return ClientUpdate(client, {"w": torch.full(SHAPE, value)}, n, 0.5)


FP32 = WireFormat()


def _reply(client: int, value: float, fmt: WireFormat = FP32) -> ClientReply:
    return ClientReply(client, encode({"w": torch.full(SHAPE, value)}, fmt), 10, 0.5)


def test_mean_and_sample_weighted_aggregation():
    ups = [_update(1.0, 10), _update(4.0, 30)]
    assert torch.allclose(FedAvg("mean").aggregate(ups)["w"], torch.full(SHAPE, 2.5))
    assert torch.allclose(FedAvg("weighted").aggregate(ups)["w"], torch.full(SHAPE, 3.25))
    with pytest.raises(ValueError, match="nothing to aggregate"):
        weighted_mean([], [])


def test_moving_average_starts_at_ma_start():
    server = Server({"w": torch.zeros(SHAPE)}, FedAvg(), moving_average=0.9, ma_start=1)
    server.step(1, [_update(10.0)])
    assert torch.allclose(server.model["w"], torch.full(SHAPE, 10.0)), "round 1 copies it"
    server.step(2, [_update(0.0)])
    assert torch.allclose(server.model["w"], torch.full(SHAPE, 9.0))
    late = Server({"w": torch.zeros(SHAPE)}, FedAvg(), moving_average=0.5, ma_start=3)
    for r, v in [(1, 2.0), (2, 4.0), (3, 8.0), (4, 0.0)]:
        late.step(r, [_update(v)])
    assert torch.allclose(late.model["w"], torch.full(SHAPE, 4.0))


def test_moving_average_is_fedavg_with_server_lr():
    # Clients start from w̄, so λ·w̄ + (1-λ)·mean(w_k) = w̄ + (1-λ)·mean(w_k - w̄).
    torch.manual_seed(0)
    lam, wbar = 0.9, torch.randn(5)
    server = Server({"w": torch.zeros(5)}, FedAvg(), moving_average=lam)
    server.step(1, [ClientUpdate(0, {"w": wbar}, 1, 0.0)])
    clients = [torch.randn(5) for _ in range(4)]
    server.step(2, [ClientUpdate(i, {"w": c}, 1, 0.0) for i, c in enumerate(clients)])
    pseudo_grad = torch.stack([c - wbar for c in clients]).mean(0)
    assert torch.allclose(server.model["w"], wbar + (1 - lam) * pseudo_grad, atol=1e-6)


def test_no_moving_average_takes_the_aggregate():
    server = Server({"w": torch.zeros(SHAPE)}, FedAvg(), moving_average=0.0)
    server.step(1, [_update(3.0)])
    server.step(2, [_update(5.0)])
    assert torch.allclose(server.model["w"], torch.full(SHAPE, 5.0))


def test_broadcast_is_the_quantized_model_in_wire_format():
    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 3)
    fmt = WireFormat(6, "BC", "stochastic")
    got = decode(
        Server(
            {"w": w}, FedAvg(), downlink=fmt, generator=torch.Generator().manual_seed(1)
        ).broadcast()
    )["w"]
    assert torch.equal(
        got, block_quantize(w, 6, "BC", "stochastic", torch.Generator().manual_seed(1))
    )
    step = torch.exp2((block_exponents(w, "BC") - 4).float())
    assert torch.equal(got / step, (got / step).round()) and not torch.equal(got, w)
    assert torch.equal(decode(Server({"w": w}, FedAvg()).broadcast())["w"], w), "fp32 by default"


def test_non_finite_aggregate_stops_the_run():
    server = Server({"w": torch.zeros(SHAPE)}, FedAvg())
    with pytest.raises(DivergenceError, match="round 4"):
        server.step(4, [_update(float("nan"))])


def _corrupt(payload: bytes) -> bytes:
    b = bytearray(payload)
    b[-3] ^= 0xFF
    return bytes(b)


def _wrong_version(payload: bytes) -> bytes:
    b = bytearray(payload)
    b[4] = 99  # the version byte right after the magic
    return bytes(b)


def _carrying(value: float):
    """A well-framed raw fp32 message (valid checksum) whose values are NaN or Inf:
    what a buggy or malicious client could send, since encode itself refuses them."""

    def make(payload: bytes) -> bytes:
        header, _ = unseal(payload)
        return seal(header, torch.full(SHAPE, value).numpy().tobytes())

    return make


BAD = {
    "truncated": lambda p: p[: len(p) // 2],
    "corrupted": _corrupt,
    "wrong version": _wrong_version,
    "empty": lambda p: b"",
    "wrong shape": lambda p: encode({"w": torch.ones(3, 2)}, WireFormat()),
    "wrong name": lambda p: encode({"v": torch.ones(SHAPE)}, WireFormat()),
    "NaN": _carrying(float("nan")),
    "Inf": _carrying(float("-inf")),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_replies_are_rejected_logged_and_the_rest_aggregated(case, caplog):
    server = Server({"w": torch.zeros(SHAPE)}, FedAvg(), moving_average=0.0)
    good = [_reply(0, 2.0), _reply(2, 4.0, WireFormat(8, "B"))]
    bad = ClientReply(1, BAD[case](_reply(1, 100.0).payload), 10, 0.5)
    with caplog.at_level(logging.WARNING):
        rejected = server.update(1, [good[0], bad, good[1]])
    assert [r.client for r in rejected] == [1] and rejected[0].reason
    assert "client 1: update rejected" in caplog.text
    assert torch.equal(server.model["w"], torch.full(SHAPE, 3.0))


def test_when_no_reply_survives_the_model_is_unchanged(caplog):
    server = Server({"w": torch.full(SHAPE, 7.0)}, FedAvg(), moving_average=0.0)
    with caplog.at_level(logging.WARNING):
        rejected = server.update(3, [ClientReply(0, b"junk", 1, 0.1), ClientReply(1, b"", 1, 0.1)])
    assert len(rejected) == 2 and "global model unchanged" in caplog.text
    assert torch.equal(server.model["w"], torch.full(SHAPE, 7.0))


def test_server_sgd_with_lr_one_minus_lambda_is_exactly_the_moving_average():
    torch.manual_seed(0)
    w, agg = torch.randn(50), torch.randn(50)
    for lam in (0.9, 0.5, 0.99):
        stepped = ServerSGD(1 - lam).step({"w": w}, {"w": agg})["w"]
        assert torch.equal(stepped, lam * w + (1 - lam) * agg)
    assert ServerSGD(1.0).step({"w": w}, {"w": agg})["w"] is agg


def test_server_momentum_and_adam_follow_their_update_rules():
    w, agg = {"w": torch.zeros(3)}, {"w": torch.tensor([1.0, -2.0, 0.5])}
    mom = ServerMomentum(lr=0.5, momentum=0.9)
    w1 = mom.step(w, agg)["w"]  # v = delta
    assert torch.allclose(w1, 0.5 * agg["w"])
    w2 = mom.step({"w": w1}, agg)["w"]  # v = 0.9 * delta_1 + delta_2
    delta2 = agg["w"] - w1
    assert torch.allclose(w2, w1 + 0.5 * (0.9 * agg["w"] + delta2))
    adam = ServerAdam(lr=0.1, betas=(0.9, 0.99), tau=1e-3)
    first = adam.step(w, agg)["w"]
    d = agg["w"]
    expected = 0.1 * (0.1 * d) / ((0.01 * d * d).sqrt() + 1e-3)
    assert torch.allclose(first, expected) and torch.equal(first.sign(), d.sign())


@pytest.mark.parametrize("opt", ["momentum", "adam"])
def test_server_optimizers_run_end_to_end(opt):
    from lpfl.config import make_config
    from lpfl.engine import run_simulation

    cfg = make_config(dataset="digits", model="mlp", clients=4, participation=1.0, rounds=3,
                      server_opt=opt, server_lr=0.05 if opt == "adam" else 0.5)  # fmt: skip
    rec = run_simulation(cfg, progress=False, log=lambda _m: None)
    assert all(r.test_loss is not None and r.test_loss < 10 for r in rec.rounds)
