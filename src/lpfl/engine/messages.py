"""What passes between the clients and the server in a round, and what can go wrong."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


class DivergenceError(RuntimeError):
    """Training produced NaN/Inf. For one client it drops that client from the round;
    for the global model it stops the run, keeping every result computed so far."""


@dataclass(frozen=True)
class ClientData:
    x: Tensor  # uint8 (N, C, H, W), on the training device
    y: Tensor  # int64 (N,)

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class ClientReply:
    """What a client sends back: its model in wire format, and what it trained on."""

    client: int
    payload: bytes
    num_samples: int
    train_loss: float
    label_counts: tuple[int, ...] | None = None  # samples per class (FedGen, FedFTG use it)


@dataclass(frozen=True)
class Rejection:
    """A client whose update was not used this round, and why."""

    client: int
    reason: str
