"""The coordinator's board: `/ui` on the coordinator's own TLS listener, for people with a login.

Pages: the jobs (paginated, filtered by state and submitter), a job (its graph, every task's state and times
per party, followed live, the failing party's root cause, and the results, logs and figures of the person's
own party), the job forms and the YAML editor, the model registry and the nodes. What the board does, it
does through the coordinator's own operations (`Coordinator.submit`, `cancel`, `rerun`), so node policies
and approvals apply exactly as to the CLI, with the person recorded as the actor.

Who sees what: viewers read; operators also submit, cancel and rerun; admins are operators who may also
delete any model. Each party's metrics, reports, feature importance and logs are shown to that party's
people only, never to another party's (nor to anyone without a party): a host's feature importance, for
one, is the host's own business.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import pandas as pd
import yaml
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..deploy.coordinator import Coordinator, CoordinatorError
from ..deploy.coordinator_store import JobMeta
from ..jobs.components import check_components
from ..jobs.results import TaskResult
from ..jobs.spec import JobSpec, JobSpecError, validate_document
from ..jobs.store import STATES, JobRecord
from ..jobs.yaml_errors import parse_yaml
from ..runtime.component import registered
from ..runtime.component_docs import describe
from .accounts import Person
from .dag import dag_svg, task_state
from .login import Gate
from .pipelines import PIPELINES, FieldError
from .render import can_draw, compared, figures_of, page, png_of, section_of

PAGE_SIZE = 50
MAX_FORM_BYTES = 256 << 10
MAX_FORM_FIELDS = 500
FIGURE_CACHE = 512  # finished tasks' numbers and figure titles, kept: they never change
PNG_CACHE = 256  # drawn figures (~30 KB each)
OFFERED_S = 30.0  # how long the nodes' shared dataset names are reused for the job form
EDITOR_SOURCE = "the YAML editor"
_CACHE_LOCK = threading.Lock()  # pages are answered on several threads
NAV = (("/ui/jobs", "jobs", "viewer"), ("/ui/new", "new job", "operator"), ("/ui/models", "models", "viewer"),
       ("/ui/nodes", "nodes", "viewer"), ("/ui/components", "components", "viewer"))


def add_federation_board(app: FastAPI, coordinator: Coordinator, gate: Gate) -> None:
    """Add the board's pages to the coordinator's app (`/ui/...`)."""
    figures_of(TaskResult("", "", "", None, None))  # imports matplotlib now, not on someone's first page
    shown: OrderedDict[tuple[str, str, str, int], dict[str, Any] | None] = OrderedDict()
    pngs: OrderedDict[tuple[str, str, str, int, int], bytes] = OrderedDict()

    def show(request: Request, person: Person | None, name: str, **values: Any) -> HTMLResponse:
        return page(name, nav=gate.nav, person=person, csrf=gate.csrf(request), **values)

    offered: dict[str, Any] = {"at": -math.inf, "names": []}

    def datasets_offered() -> list[str]:
        """The dataset names the nodes' policies share, for the form's suggestions (asked at most every 30 s)."""
        with _CACHE_LOCK:
            if time.monotonic() - offered["at"] < OFFERED_S:
                return offered["names"]
        names = sorted({d for n in coordinator.node_status().values() for d in (n.get("shared") or [])})
        with _CACHE_LOCK:
            offered.update(at=time.monotonic(), names=names)
        return names

    def job_form(request: Request, person: Person, chosen: Any, values: dict[str, str], error: str | None = None,
                 error_field: str | None = None) -> HTMLResponse:
        return show(request, person, "fed_new.html", pipelines=PIPELINES.values(), pipeline=chosen,
                    fields=chosen.fields(), nodes=list(coordinator.nodes), values=values, error=error,
                    error_field=error_field, datasets=datasets_offered())

    @app.get("/ui", include_in_schema=False)
    def _home() -> RedirectResponse:
        return RedirectResponse("/ui/jobs")

    @app.get("/ui/jobs", response_class=HTMLResponse, include_in_schema=False)
    def jobs(request: Request, state: str | None = None, submitter: str | None = None,
             page_number: int = 1) -> HTMLResponse:
        person = gate.need(request)
        if state is not None and state not in STATES:
            raise HTTPException(400, f"unknown state {state!r}; one of {', '.join(STATES)}")
        total, listed = _job_page(coordinator, state, submitter, page_number)
        pages = max(1, math.ceil(total / PAGE_SIZE))
        counts = coordinator.store.states.task_states([job.id for job, _ in listed])
        return show(request, person, "fed_jobs.html", jobs=listed, counts=counts, state=state, states=STATES,
                    submitter=submitter, page=min(max(1, page_number), pages), pages=pages, total=total)

    @app.get("/ui/jobs/{job_id}", response_class=HTMLResponse, include_in_schema=False)
    def job(request: Request, job_id: str) -> HTMLResponse:
        person = gate.need(request)
        view = _job_or_404(coordinator, job_id)
        spec = JobSpec.model_validate_json(coordinator.store.states.job(job_id).spec)
        by_task: dict[str, list[str]] = {}
        for t in view["tasks"]:
            by_task.setdefault(t["task"], []).append(t["state"])
        order = {task: i for i, task in enumerate(spec.topological_order())}
        tasks = sorted(view["tasks"], key=lambda t: (order.get(t["task"], len(order)), t["party"]))
        reports = [r for r in coordinator.logs(job_id) if r["party"] == person.party]
        return show(request, person, "fed_job.html", job=view, tasks=tasks, spec=spec,
                    graph=dag_svg(spec, {t: task_state(s) for t, s in by_task.items()}),
                    sections=[s for r in reports if r["state"] != "running"
                              if (s := _section(shown, job_id, r)) is not None],
                    logs=list(dict.fromkeys((r["task"], r["party"]) for r in reports if r["log"])),
                    approvals=view.get("approvals") or {}, can_draw=can_draw())

    @app.get("/ui/jobs/{job_id}/figures/{task}/{party}/{attempt}/{number}.png", include_in_schema=False)
    def figure(request: Request, job_id: str, task: str, party: str, attempt: int, number: int) -> Response:
        """One figure of a party's results, drawn once and kept; for that party's people only."""
        person = gate.need(request)
        if party != person.party:
            raise HTTPException(403, f"only {party!r}'s people see {party!r}'s results")
        key = (job_id, task, party, attempt, number)
        with _CACHE_LOCK:
            data = pngs.get(key)
        if data is None:
            runs = [r for r in coordinator.logs(job_id)
                    if (r["task"], r["party"], r["attempt"]) == (task, party, attempt) and r["state"] != "running"]
            data = png_of(_result(runs[0]), number) if runs else None
            if data is None:
                raise HTTPException(404, f"no figure {number} of task {task!r} at {party!r}")
            with _CACHE_LOCK:
                pngs[key] = data
                while len(pngs) > PNG_CACHE:
                    pngs.popitem(last=False)
        return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/ui/compare", response_class=HTMLResponse, include_in_schema=False)
    def compare(request: Request, a: str, b: str) -> HTMLResponse:
        """Two runs' figures side by side: those of the person's own party."""
        person = gate.need(request)
        runs = [_job_or_404(coordinator, job_id) for job_id in (a, b)]
        results = [[_result(r) for r in coordinator.logs(run["id"]) if r["party"] == person.party] for run in runs]
        return show(request, person, "compare.html", runs=runs, rows=compared(results))

    @app.get("/ui/jobs/{job_id}/state.json", include_in_schema=False)
    def job_state(request: Request, job_id: str) -> JSONResponse:
        """What the job page's script polls: the job's and each task's state per party."""
        gate.need(request)
        view = _job_or_404(coordinator, job_id)
        progress = {(p.task, p.party): p for p in coordinator.store.states.progress(job_id)}
        tasks = []
        for t in view["tasks"]:
            p = progress.get((t["task"], t["party"]))
            tasks.append({"task": t["task"], "party": t["party"], "state": t["state"], "started_at": t["started_at"],
                          "finished_at": t["finished_at"], "done": p.done if p else None,
                          "total": p.total if p else None, "message": p.message if p else ""})
        return JSONResponse({"state": view["state"], "error": view["error"], "approvals": view.get("approvals") or {},
                             "tasks": tasks})

    def runs_of(request: Request, job_id: str, task: str, party: str) -> tuple[Person, list[dict[str, Any]]]:
        person = gate.need(request)
        _job_or_404(coordinator, job_id)
        if party != person.party:
            raise HTTPException(403, f"only {party!r}'s people read {party!r}'s logs")
        runs = [r for r in coordinator.logs(job_id) if r["task"] == task and r["party"] == party]
        if not runs:
            raise HTTPException(404, f"no log of task {task!r} at {party!r} yet: it arrives once the task runs")
        return person, runs

    @app.get("/ui/jobs/{job_id}/logs/{task}/{party}", response_class=HTMLResponse, include_in_schema=False)
    def job_log(request: Request, job_id: str, task: str, party: str) -> HTMLResponse:
        person, runs = runs_of(request, job_id, task, party)
        return show(request, person, "fed_log.html", job_id=job_id, task=task, party=party, runs=runs)

    @app.get("/ui/jobs/{job_id}/logs/{task}/{party}/last.json", include_in_schema=False)
    def job_log_last(request: Request, job_id: str, task: str, party: str) -> JSONResponse:
        """What a running task's log page polls: the latest attempt's state and log tail."""
        _, runs = runs_of(request, job_id, task, party)
        last = max(runs, key=lambda r: r["attempt"])
        return JSONResponse({"attempt": last["attempt"], "state": last["state"], "log": last["log"]})

    async def job_action(request: Request, job_id: str, act: Callable[[str], object]) -> Response:
        """An operator's action on a job, taken by the coordinator's own operation with `board:<name>` as actor."""
        person = gate.need(request, "operator")
        await gate.form(request, MAX_FORM_BYTES, MAX_FORM_FIELDS)
        try:
            act(f"board:{person.name}")
        except CoordinatorError as err:
            raise HTTPException(err.status, str(err)) from None
        return RedirectResponse(f"/ui/jobs/{job_id}", status_code=303)

    @app.post("/ui/jobs/{job_id}/cancel", include_in_schema=False)
    async def cancel(request: Request, job_id: str) -> Response:
        return await job_action(request, job_id, lambda actor: coordinator.cancel(job_id, actor))

    @app.post("/ui/jobs/{job_id}/rerun", include_in_schema=False)
    async def rerun(request: Request, job_id: str) -> Response:
        return await job_action(request, job_id, lambda actor: coordinator.rerun(job_id, actor))

    @app.get("/ui/new", response_class=HTMLResponse, include_in_schema=False)
    def new_job(request: Request, pipeline: str = "vertical-secureboost") -> HTMLResponse:
        person = gate.need(request, "operator")
        return job_form(request, person, _pipeline(pipeline), {})

    @app.post("/ui/new", response_class=HTMLResponse, include_in_schema=False)
    async def submit_form(request: Request) -> Response:
        person = gate.need(request, "operator")
        form = {k: str(v) for k, v in (await gate.form(request, MAX_FORM_BYTES, MAX_FORM_FIELDS)).items()}
        chosen = _pipeline(form.get("pipeline", ""))
        error = error_field = None
        try:
            parties = {role: (form.get(f"party.{role}", ""), form.get(f"data.{role}", "").strip())
                       for role in chosen.roles}
            document = chosen.document(form.get("job", "").strip() or chosen.name, parties, form)
            text = yaml.safe_dump(document, sort_keys=False)
            if form.get("action") == "yaml":
                return show(request, person, "fed_yaml.html", text=text, error=None, checked=False)
            return _submitted(coordinator, person, text)
        except FieldError as err:
            error, error_field = str(err), err.field
        except _Refused as err:
            error, error_field = str(err), _field_named(str(err), chosen)
        answer = job_form(request, person, chosen, form, error, error_field)
        answer.status_code = 400
        return answer

    @app.get("/ui/new/yaml", response_class=HTMLResponse, include_in_schema=False)
    def yaml_editor(request: Request) -> HTMLResponse:
        person = gate.need(request, "operator")
        return show(request, person, "fed_yaml.html", text="", error=None, checked=False)

    @app.post("/ui/new/yaml", response_class=HTMLResponse, include_in_schema=False)
    async def submit_yaml(request: Request) -> Response:
        person = gate.need(request, "operator")
        form = await gate.form(request, MAX_FORM_BYTES, MAX_FORM_FIELDS)
        text = str(form.get("spec", ""))
        try:
            if form.get("action") == "check":
                _checked(text)
                return show(request, person, "fed_yaml.html", text=text, error=None, checked=True)
            return _submitted(coordinator, person, text)
        except _Refused as err:
            answer = show(request, person, "fed_yaml.html", text=text, error=str(err), checked=False)
            answer.status_code = 400
            return answer

    @app.get("/ui/models", response_class=HTMLResponse, include_in_schema=False)
    def models(request: Request, name: str | None = None) -> HTMLResponse:
        person = gate.need(request)
        records = [m.to_json() for m in coordinator.registry.models(name)]
        for m in records:  # each party's metrics for its own people only
            m["own_metrics"] = {r["name"]: r["value"] for r in m["metrics"].get(person.party or "", [])
                                if r.get("step") is None}
        return show(request, person, "fed_models.html", models=records)

    @app.get("/ui/nodes", response_class=HTMLResponse, include_in_schema=False)
    def nodes(request: Request) -> HTMLResponse:
        person = gate.need(request)
        return show(request, person, "fed_nodes.html", nodes=coordinator.node_status())

    @app.get("/ui/components", response_class=HTMLResponse, include_in_schema=False)
    def components(request: Request) -> HTMLResponse:
        person = gate.need(request)
        return show(request, person, "components.html", components=[describe(c) for c in registered().values()])


class _Refused(ValueError):
    """A job the board could not submit; the message says where and why."""


def _pipeline(name: str) -> Any:
    if name not in PIPELINES:
        raise HTTPException(404, f"no job form {name!r}; forms: {', '.join(PIPELINES)}")
    return PIPELINES[name]


def _checked(text: str) -> JobSpec:
    """The spec in `text`, validated as the coordinator will, every problem located by line and field."""
    try:
        document = parse_yaml(text, EDITOR_SOURCE, JobSpecError)
        spec = validate_document(document)
    except JobSpecError as err:
        raise _Refused(str(err)) from None
    try:
        check_components(spec, document)
    except JobSpecError as err:
        raise _Refused(str(err)) from None
    return spec


def _submitted(coordinator: Coordinator, person: Person, text: str) -> Response:
    _checked(text)
    try:
        job_id = coordinator.submit(text, person.party or f"board:{person.name}")  # never a certificate's name
    except CoordinatorError as err:
        node = f" (node {err.extra['node']!r})" if "node" in err.extra else ""
        raise _Refused(f"{err}{node}") from None
    return RedirectResponse(f"/ui/jobs/{job_id}", status_code=303)


def _field_named(message: str, pipeline: Any) -> str | None:
    for task in pipeline.fields():
        for p in task["parameters"]:
            if f"tasks.{task['task']}.params.{p['name']}" in message:
                return p["field"]
    return None


def _job_or_404(coordinator: Coordinator, job_id: str) -> dict[str, Any]:
    try:
        return coordinator.job(job_id)
    except CoordinatorError as err:
        raise HTTPException(err.status, str(err)) from None


def _job_page(coordinator: Coordinator, state: str | None, submitter: str | None,
              page_number: int) -> tuple[int, list[tuple[JobRecord, str]]]:
    """(how many jobs match, this page of them as (job, submitter)), newest first, in two queries."""
    conditions = []
    if state is not None:
        conditions.append(JobRecord.state == state)
    if submitter:
        conditions.append(JobMeta.submitter == submitter)
    joined = select(JobRecord, JobMeta.submitter).join(JobMeta, JobMeta.job_id == JobRecord.id).where(*conditions)
    counted = select(func.count()).select_from(JobRecord).join(JobMeta, JobMeta.job_id == JobRecord.id) \
        .where(*conditions)
    with Session(coordinator.store.engine, expire_on_commit=False) as session:
        total = int(session.scalar(counted) or 0)
        pages = max(1, math.ceil(total / PAGE_SIZE))
        offset = (min(max(1, page_number), pages) - 1) * PAGE_SIZE
        rows = session.execute(joined.order_by(JobRecord.created_at.desc(), JobRecord.id)
                               .offset(offset).limit(PAGE_SIZE))
        return total, [(job, who) for job, who in rows]


def _result(run: dict[str, Any]) -> TaskResult:
    """A party's report of one task run (`Coordinator.logs`) as the results the figures are drawn from."""
    importance = run.get("importance")
    return TaskResult(run["task"], run["party"], run["state"], None, None,
                      metrics=(run["metrics"] or {}).get("metrics", []), report=run.get("report"),
                      importance=pd.DataFrame(importance) if importance else None)


def _section(cache: OrderedDict[tuple[str, str, str, int], dict[str, Any] | None], job_id: str,
             run: dict[str, Any]) -> dict[str, Any] | None:
    """A party's results of one finished task run (`render.section_of`), worked out once."""
    key = (job_id, run["task"], run["party"], run["attempt"])
    with _CACHE_LOCK:
        if key in cache:
            return cache[key]
    section = section_of(_result(run))
    if section is not None:
        section["attempt"] = run["attempt"]
    with _CACHE_LOCK:
        cache[key] = section
        while len(cache) > FIGURE_CACHE:
            cache.popitem(last=False)
    return section
