"""The federated round loop and its parts: client training (sequential or vectorized),
server, evaluation, recording."""

from .client import LocalTrainer, OptimizerSpec
from .evaluate import evaluate
from .loop import resolve_device, run_simulation
from .messages import ClientData, ClientReply, DivergenceError, Rejection
from .recorder import Recorder, RoundMetrics, summarize
from .server import Server
from .vectorized import VectorizedTrainer

__all__ = [
    "ClientData",
    "ClientReply",
    "DivergenceError",
    "LocalTrainer",
    "OptimizerSpec",
    "Recorder",
    "Rejection",
    "RoundMetrics",
    "Server",
    "VectorizedTrainer",
    "evaluate",
    "resolve_device",
    "run_simulation",
    "summarize",
]
