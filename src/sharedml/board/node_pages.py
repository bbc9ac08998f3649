"""A node's board: `/ui` on the node's own control listener, for the node's own people.

Why on the node and not the coordinator: approving a job is the data owner's decision, so it is taken where
the data is, by the node's operators with the node's own accounts; the coordinator can read whether a job is
approved but has no way to approve one. The pages call the same `Node.decide` as `sharedml node approve`,
so a decision made here has exactly the CLI's effect (the policy is checked again, the audit log records the
person).
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..deploy.node import Node
from .login import Forbidden, Gate
from .render import page

NAV = (("/ui/approvals", "approvals", "viewer"), ("/ui/audit", "audit log", "viewer"))
AUDIT_PAGE = 100
MAX_AUDIT_PAGES = 1_000_000
PENDING_SHOWN = 100  # the oldest first; the rest once these are decided
MAX_REASON = 500
MAX_DECISION_BYTES = 8 << 10


def add_node_board(app: FastAPI, node: Node, gate: Gate) -> None:
    """Add the approvals and audit pages to the node's app (`/ui/...`)."""

    def show(request: Request, name: str, **values: Any) -> HTMLResponse:
        return page(name, nav=gate.nav, person=gate.person(request), csrf=gate.csrf(request),
                    brand=f"sharedml node {node.party}", party=node.party, **values)

    @app.get("/ui", include_in_schema=False)
    def _home() -> RedirectResponse:
        return RedirectResponse("/ui/approvals")

    @app.get("/ui/approvals", response_class=HTMLResponse, include_in_schema=False)
    def approvals(request: Request) -> HTMLResponse:
        gate.need(request)
        return show(request, "node_approvals.html", pending=node.pending_approvals(PENDING_SHOWN),
                    waiting=node.store.count_pending())

    @app.post("/ui/approvals/{job_id}", include_in_schema=False)
    async def decide(request: Request, job_id: str) -> Response:
        person = gate.need(request, "approver")
        form = await gate.form(request, MAX_DECISION_BYTES, max_fields=10)
        action = form.get("action")
        if action not in ("approve", "reject"):
            raise HTTPException(400, "action must be approve or reject")
        node.decide(job_id, action == "approve", f"board:{person.name}", str(form.get("reason", ""))[:MAX_REASON])
        return RedirectResponse("/ui/approvals", status_code=303)

    @app.get("/ui/audit", response_class=HTMLResponse, include_in_schema=False)
    def audit(request: Request, page_number: int = 1, verify: bool = False) -> HTMLResponse:
        """The audit log, newest first; `verify=true` also checks the whole hash chain (it reads every record,
        so an approver asks for it; a viewer's page never costs that)."""
        person = gate.need(request)
        if verify and not person.may("approver"):
            raise Forbidden("checking the whole audit chain is for approvers")
        current = min(max(1, page_number), MAX_AUDIT_PAGES)
        found = node.audit_entries(AUDIT_PAGE, (current - 1) * AUDIT_PAGE, verify=verify)
        return show(request, "node_audit.html", entries=found["entries"], page=current, intact=found.get("intact"),
                    pages=max(1, math.ceil(found["total"] / AUDIT_PAGE)), total=found["total"])
