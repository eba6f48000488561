"""lpfl: federated learning with low-precision local training and high-precision aggregation."""

__version__ = "0.1.0"
