"""The federated round loop and its parts: client training, server, evaluation, recording."""

from .client import ClientData, DivergenceError, LocalTrainer, OptimizerSpec
from .evaluate import evaluate
from .loop import resolve_device, run_simulation
from .recorder import Recorder, RoundMetrics, summarize
from .server import Server

__all__ = [
    "ClientData",
    "DivergenceError",
    "LocalTrainer",
    "OptimizerSpec",
    "Recorder",
    "RoundMetrics",
    "Server",
    "evaluate",
    "resolve_device",
    "run_simulation",
    "summarize",
]
