"""The Flower ServerApp: reads the run config and runs lpfl's rounds over the Grid.

``flwr run`` fills the run config from ``[tool.flwr.app.config]`` and ``--run-config``.
Flower's in-process ``run_simulation`` passes no run config, so
:func:`make_server_app` takes the settings as arguments too.
"""

from __future__ import annotations

from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from .rounds import run_rounds
from .settings import from_run_config


def make_server_app(**overrides: Any) -> ServerApp:
    """A ServerApp whose run config is updated with ``overrides`` (kebab- or snake-case)."""
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        cfg, flower = from_run_config({**context.run_config, **overrides})
        run_rounds(grid, cfg, flower)

    return server_app


app = make_server_app()
