"""The coordinator's HTTP API (OpenAPI docs at /docs), served over HTTPS with mutual TLS.

Any holder of a federation certificate may call it; the certificate's name is recorded as the job's
submitter and passed to the nodes, whose policies and audit logs see it. Errors answer
``{"detail": message}`` plus ``node`` where one node refused (e.g. a policy denial).
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from ..lifeline import exit_with
from ..net.https import peer_name, server
from ..private_files import PRIVATE_UMASK
from .config import CoordinatorConfig, load_config
from .coordinator import Coordinator, CoordinatorError
from .model_registry import RegistryError

SCHEDULER_STOP_S = 5.0
SCHEDULER_NICENESS = 5


class Submission(BaseModel):
    spec: str  # the job's YAML text, as in a job file


def create_app(coordinator: Coordinator) -> FastAPI:
    app = FastAPI(title="sharedml coordinator", description=__doc__)

    @app.exception_handler(CoordinatorError)
    def _refused(_request: Request, err: CoordinatorError) -> JSONResponse:
        return JSONResponse({"detail": str(err), **err.extra}, status_code=err.status)

    @app.exception_handler(RegistryError)
    def _registry(_request: Request, err: RegistryError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=404 if str(err).startswith("no model") else 400)

    if coordinator.config.board is not None:
        _add_board(app, coordinator)

    @app.post("/jobs", status_code=201)
    def submit(body: Submission, caller: str = Depends(peer_name)) -> dict[str, str]:
        return {"id": coordinator.submit(body.spec, caller)}

    @app.get("/jobs")
    def jobs(limit: int = Query(50, ge=1, le=1000), _caller: str = Depends(peer_name)) -> list[dict[str, Any]]:
        return coordinator.jobs(limit)

    @app.get("/jobs/{job_id}")
    async def job(job_id: str, _caller: str = Depends(peer_name)) -> JSONResponse:
        """A job's state, error, timestamps and each task's state per party.

        The query clients poll, so it is answered on the event loop: a read of a few rows costs less than
        the hand-off to a worker thread and back, which waits for the GIL each way under load."""
        return JSONResponse(coordinator.job(job_id))  # already plain JSON: skip FastAPI's re-encoding

    @app.get("/jobs/{job_id}/logs")
    def logs(job_id: str, caller: str = Depends(peer_name)) -> list[dict[str, Any]]:
        return coordinator.logs(job_id, caller)

    @app.post("/jobs/{job_id}/cancel")
    def cancel(job_id: str, caller: str = Depends(peer_name)) -> dict[str, Any]:
        coordinator.cancel(job_id, caller)
        return coordinator.job(job_id)

    @app.post("/jobs/{job_id}/rerun")
    def rerun(job_id: str, caller: str = Depends(peer_name)) -> dict[str, int]:
        return {"attempt": coordinator.rerun(job_id, caller)}

    @app.get("/nodes")
    def nodes(_caller: str = Depends(peer_name)) -> dict[str, Any]:
        return coordinator.node_status()

    @app.get("/models")
    def models(name: str | None = None, _caller: str = Depends(peer_name)) -> list[dict[str, Any]]:
        return [m.to_json() for m in coordinator.registry.models(name)]

    @app.get("/models/{ref}")
    def model(ref: str, _caller: str = Depends(peer_name)) -> dict[str, Any]:
        return coordinator.registry.get(ref).to_json()

    @app.get("/models/{ref}/export")
    def export(ref: str, _caller: str = Depends(peer_name)) -> dict[str, Any]:
        return coordinator.registry.export(ref)

    @app.post("/models/import", status_code=201)
    def import_model(document: Annotated[dict[str, Any], Body()], caller: str = Depends(peer_name)) -> dict[str, Any]:
        return coordinator.import_model(document, caller)

    @app.delete("/models/{ref}")
    def delete(ref: str, caller: str = Depends(peer_name)) -> dict[str, Any]:
        return coordinator.delete_model(ref, caller)

    return app


def _add_board(app: FastAPI, coordinator: Coordinator) -> None:
    """The board's pages under /ui, its people from the accounts file, admins also by certificate."""
    from ..board.accounts import Accounts
    from ..board.federation import NAV, add_federation_board
    from ..board.login import Gate, add_login, session_secret
    from ..board.render import add_board_basics

    config, settings = coordinator.config, coordinator.config.board
    gate = Gate(Accounts(config.path(settings.accounts)), session_secret(config.path(settings.secret)),
                set(config.admins), NAV)
    add_board_basics(app)
    add_login(app, gate)
    add_federation_board(app, coordinator, gate)


def serve(config_path: Path) -> None:
    """Run the coordinator until SIGINT/SIGTERM: the API in this process, the scheduler in a child process.

    Two processes, because a scheduler thread would make every status query wait for the GIL behind it
    after each I/O call; they share only the database (see coordinator.py)."""
    os.umask(PRIVATE_UMASK)  # its database holds every job's spec, submitter and audit log
    config = load_config(config_path, CoordinatorConfig)
    coordinator = Coordinator(config)
    scheduler = multiprocessing.get_context("spawn").Process(target=_schedule, args=(str(config_path), os.getpid()),
                                                             name="sharedml-scheduler", daemon=True)
    scheduler.start()
    try:
        server(create_app(coordinator), config.listen, config.tls,
               browsers_under="/ui" if config.board is not None else None).run()
    finally:
        scheduler.terminate()
        scheduler.join(SCHEDULER_STOP_S)
        coordinator.close()


def _schedule(config_path: str, api_pid: int) -> None:
    exit_with(api_pid)
    os.nice(SCHEDULER_NICENESS)  # background work: API requests (in the parent) come first
    Coordinator(load_config(config_path, CoordinatorConfig)).run_scheduler()
