"""Tables and plots of finished runs."""

from .plots import plot_accuracy

__all__ = ["plot_accuracy"]
