"""What a client costs: bytes on the wire and training memory, counted and measured."""

from .clients import ClientCost, client_costs
from .memory import MemoryBreakdown, analytic_memory, peak_memory, saved_activations, stored_bytes

__all__ = [
    "ClientCost",
    "MemoryBreakdown",
    "analytic_memory",
    "client_costs",
    "peak_memory",
    "saved_activations",
    "stored_bytes",
]
