"""The federated round loop and its parts: client training, server, evaluation, recording."""

from .client import ClientData, DivergenceError, LocalTrainer, OptimizerSpec
from .evaluate import evaluate
from .loop import resolve_device, run_simulation
from .recorder import Recorder, RoundMetrics, summarize
from .server import ClientReply, Rejection, Server

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
    "evaluate",
    "resolve_device",
    "run_simulation",
    "summarize",
]
