"""`sharedml serve --config serve.yaml`: run one serving replica (guest, host or registry)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from ..cli_errors import fail
from .errors import ServeConfigError

app = typer.Typer(help="Online joint prediction: run a guest, host or registry replica.",
                  pretty_exceptions_enable=False)


@app.callback(invoke_without_command=True)
def serve(config: Annotated[Path, typer.Option("--config", "-c", help="the replica's serve.yaml")],
          log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info") -> None:
    """Serve one replica until interrupted; the role, party, models and peers come from the file."""
    from .service import run

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run(config)
    except (ServeConfigError, FileNotFoundError) as exc:
        fail(str(exc))
