"""Tables and plots of finished runs."""

from .build import default_report_dir, write_report
from .paper import PAPER_TABLE1, paper_value
from .plots import plot_accuracy
from .runs import Run, load_runs
from .table1 import Cell, Table1, build_table1, write_table1

__all__ = [
    "PAPER_TABLE1",
    "Cell",
    "Run",
    "Table1",
    "build_table1",
    "default_report_dir",
    "load_runs",
    "paper_value",
    "plot_accuracy",
    "write_report",
    "write_table1",
]
