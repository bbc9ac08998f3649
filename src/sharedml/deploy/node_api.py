"""The node's control API: what the coordinator may ask of a node, over HTTPS with mutual TLS.

Only the certificate named in node.yaml's ``coordinator`` field may call it. A policy denial answers
403 with the node, the rule and the fix, so the coordinator can pass it to the submitter unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ..net.https import require_peer, server
from ..private_files import PRIVATE_UMASK
from .config import NodeConfig, load_config
from .node import Node, NodeError
from .policy import PolicyDenied


class JobRequest(BaseModel):
    spec: dict[str, Any]
    submitter: str = Field(min_length=1, max_length=200, description="certificate name of the job's submitter, "
                           "as the coordinator authenticated it; the policy's `submitters` rules apply to it")


class WithdrawRequest(BaseModel):
    why: str = Field("", max_length=500)


class RunRequest(BaseModel):
    ports: dict[str, int]
    attempt: int = Field(1, ge=1)


def create_app(node: Node) -> FastAPI:
    app = FastAPI(title=f"sharedml node {node.party}", description=__doc__)

    async def coordinator(request: Request) -> str:
        return await require_peer(request, {node.config.coordinator})

    @app.exception_handler(NodeError)
    def _node_error(_request: Request, err: NodeError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=err.status)

    @app.exception_handler(PolicyDenied)
    def _denied(_request: Request, err: PolicyDenied) -> JSONResponse:
        return JSONResponse({"detail": str(err), "node": err.node, "rule": err.rule}, status_code=403)

    @app.get("/health")
    def health(_actor: str = Depends(coordinator)) -> dict[str, Any]:
        return node.health()

    @app.post("/jobs/{job_id}/approve")
    def approve(job_id: str, body: JobRequest, actor: str = Depends(coordinator)) -> dict[str, Any]:
        """Check a job against the policy; `pending` when the node's operators must also approve it."""
        datasets = node.approve(job_id, body.spec, actor, body.submitter)
        return {"datasets": datasets, "pending": node.approval_state(job_id)["state"] == "pending"}

    @app.get("/jobs/{job_id}/approval")
    def approval(job_id: str, _actor: str = Depends(coordinator)) -> dict[str, Any]:
        """Whether the node's operators approved the job (only they decide: nothing here can)."""
        return node.approval_state(job_id)

    @app.post("/jobs/{job_id}/withdraw")
    def withdraw(job_id: str, body: WithdrawRequest, actor: str = Depends(coordinator)) -> dict[str, bool]:
        """The job ended before this node's operators decided (cancelled, or refused elsewhere)."""
        return {"withdrawn": node.withdraw(job_id, actor, body.why)}

    @app.post("/jobs/{job_id}/open")
    def open_job(job_id: str, _actor: str = Depends(coordinator)) -> dict[str, int]:
        return {"port": node.open_job(job_id)}

    @app.post("/jobs/{job_id}/tasks/{task}/run", status_code=202)
    def run(job_id: str, task: str, body: RunRequest, actor: str = Depends(coordinator)) -> dict[str, str]:
        node.start_task(job_id, task, body.ports, body.attempt, actor)
        return {"state": "running"}

    @app.get("/jobs/{job_id}/tasks/{task}")
    def status(job_id: str, task: str, _actor: str = Depends(coordinator)) -> dict[str, Any]:
        return node.status(job_id, task)

    @app.post("/jobs/{job_id}/tasks/{task}/cancel")
    def cancel(job_id: str, task: str, _actor: str = Depends(coordinator)) -> dict[str, bool]:
        return {"cancelling": node.cancel(job_id, task)}

    @app.delete("/jobs/{job_id}/tasks/{task}/outputs")
    def delete_outputs(job_id: str, task: str, actor: str = Depends(coordinator)) -> dict[str, bool]:
        return {"deleted": node.delete_outputs(job_id, task, actor)}

    if node.config.board is not None:
        _add_board(app, node)
    return app


def _add_board(app: FastAPI, node: Node) -> None:
    """The node's board under /ui: its operators' approvals and the audit log, for the node's own accounts."""
    from ..board.accounts import Accounts
    from ..board.login import Gate, add_login, session_secret
    from ..board.node_pages import NAV, add_node_board
    from ..board.render import add_board_basics

    config, settings = node.config, node.config.board
    gate = Gate(Accounts(config.path(settings.accounts)), session_secret(config.path(settings.secret)), set(), NAV,
                cookie=f"__Host-sharedml-node-{node.party}")
    add_board_basics(app)
    add_login(app, gate)
    add_node_board(app, node, gate)


def serve(config_path: Path) -> None:
    """Run a node until SIGINT/SIGTERM: its control API here, task workers in processes of their own.
    On the signal uvicorn stops serving and re-raises it, ending this process; workers end themselves
    when they see the node gone (lifeline.py), interrupting their protocol run as a crash would."""
    os.umask(PRIVATE_UMASK)  # its database, run folders and logs are the node's alone
    config = load_config(config_path, NodeConfig)
    node = Node(config, str(config_path))
    node.start()
    try:
        server(create_app(node), config.listen, node.tls, callers={config.coordinator},
               browsers_under="/ui" if config.board is not None else None).run()
    finally:
        node.close()
