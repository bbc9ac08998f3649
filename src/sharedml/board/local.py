"""The local board (`sharedml board --workdir DIR`): read-only pages over the job store and artifacts of
`sharedml run` or the Python API, served over plain HTTP on loopback only, without logins (whoever can reach
127.0.0.1 on this machine can read the runs folder anyway).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.middleware.trustedhost import TrustedHostMiddleware

from ..jobs.components import load_builtin_components
from ..jobs.results import JobNotFound, TaskResult, collect
from ..jobs.spec import JobSpecError, parse_job
from ..jobs.store import STATES, JobStore, sqlite_url
from ..runtime.component import registered
from ..runtime.component_docs import describe
from .dag import dag_svg, task_state
from .render import add_board_basics, can_draw, compared, png_of, section_of
from .render import page as render_page

PAGE_SIZE = 50
LOG_TAIL_BYTES = 256 << 10  # the end of a party's log that its page shows
NAV = (("/ui/jobs", "jobs", None), ("/ui/components", "components", None))


def local_board(workdir: Path) -> FastAPI:
    """The read-only board over a local runs directory (`<workdir>/sharedml.db` and its artifacts)."""
    workdir = Path(workdir).resolve()
    db = workdir / "sharedml.db"
    if not db.exists():
        raise FileNotFoundError(f"no job database at {db}: run a job first (`sharedml run`) or pass --workdir")
    store = JobStore(sqlite_url(db))
    app = FastAPI(title="sharedml board", docs_url=None, redoc_url=None, openapi_url=None)
    # Plain HTTP on loopback without a login: answer only requests addressed to loopback, so that a web page
    # elsewhere cannot read it by pointing a name of its own at 127.0.0.1 (DNS rebinding).
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost"])
    add_board_basics(app)

    def page(name: str, **values: Any) -> HTMLResponse:
        return render_page(name, nav=NAV, where=str(workdir), **values)

    @app.get("/", include_in_schema=False)
    @app.get("/ui", include_in_schema=False)
    def _home() -> RedirectResponse:
        return RedirectResponse("/ui/jobs")

    @app.get("/ui/jobs", response_class=HTMLResponse)
    def jobs(state: str | None = None, page_number: int = 1) -> HTMLResponse:
        if state is not None and state not in STATES:
            raise HTTPException(400, f"unknown state {state!r}; one of {', '.join(STATES)}")
        total = store.count_jobs(state)
        pages = max(1, math.ceil(total / PAGE_SIZE))
        current = min(max(1, page_number), pages)
        listed = store.jobs(PAGE_SIZE, (current - 1) * PAGE_SIZE, state)
        counts = store.task_states([j.id for j in listed])
        return page("jobs.html", jobs=listed, counts=counts, state=state, states=STATES, page=current,
                    pages=pages, total=total)

    def _job(job_id: str) -> tuple[Any, list[TaskResult]]:
        try:
            return collect(workdir, store, job_id)
        except JobNotFound as err:
            raise HTTPException(404, str(err)) from None

    @app.get("/ui/jobs/{job_id}", response_class=HTMLResponse)
    def job(job_id: str) -> HTMLResponse:
        record, results = _job(job_id)
        by_task: dict[str, list[str]] = {}
        for r in results:
            by_task.setdefault(r.task, []).append(r.state)
        try:
            graph = dag_svg(parse_job(record.spec), {t: task_state(s) for t, s in by_task.items()})
        except JobSpecError:  # a job stored before its spec was kept as YAML: no picture, the table still says all
            graph = None
        logs = sorted(p.name.removesuffix(".log") for p in (workdir / job_id / "_local").glob("*.log"))
        shown = [s for r in results if (s := section_of(r)) is not None]
        return page("job.html", job=record, results=results, graph=graph, sections=shown, logs=logs,
                    can_draw=can_draw())

    @app.get("/ui/jobs/{job_id}/figures/{task}/{party}/{attempt}/{number}.png", include_in_schema=False)
    def figure(job_id: str, task: str, party: str, attempt: int, number: int) -> Response:
        """One figure of a task's results at a party (a local run has one attempt: 1)."""
        _, results = _job(job_id)
        found = [r for r in results if (r.task, r.party) == (task, party)]
        data = png_of(found[0], number) if found and attempt == 1 else None
        if data is None:
            raise HTTPException(404, f"no figure {number} of task {task!r} at {party!r} in job {job_id}")
        return Response(data, media_type="image/png")

    @app.get("/ui/jobs/{job_id}/state.json")
    def job_state(job_id: str) -> dict[str, Any]:
        """What the job page's script polls: the job's state and each task's state and progress per party."""
        record = store.job(job_id)
        if record is None:
            raise HTTPException(404, f"no job {job_id!r}")
        progress = {(p.task, p.party): p for p in store.progress(job_id)}
        tasks = []
        for t in store.tasks(job_id):
            p = progress.get((t.task, t.party))
            tasks.append({"task": t.task, "party": t.party, "state": t.state,
                          "done": p.done if p else None, "total": p.total if p else None,
                          "message": p.message if p else ""})
        return {"state": record.state, "tasks": tasks}

    @app.get("/ui/jobs/{job_id}/logs/{party}", response_class=PlainTextResponse)
    def job_log(job_id: str, party: str) -> str:
        """A party's log of a job run with `--mode processes` (threads mode logs to the caller's console)."""
        if store.job(job_id) is None:
            raise HTTPException(404, f"no job {job_id!r}")
        log = (workdir / job_id / "_local" / f"{party}.log").resolve()
        if log.parent != (workdir / job_id / "_local").resolve() or not log.is_file():  # no path outside the run
            raise HTTPException(404, f"no log of party {party!r} for job {job_id} (only processes-mode runs keep one)")
        return log.read_bytes()[-LOG_TAIL_BYTES:].decode(errors="replace")

    @app.get("/ui/components", response_class=HTMLResponse)
    def components() -> HTMLResponse:
        load_builtin_components()
        return page("components.html", components=[describe(c) for c in registered().values()])

    @app.get("/ui/compare", response_class=HTMLResponse)
    def compare(a: str, b: str) -> HTMLResponse:
        runs = [_job(a), _job(b)]
        return page("compare.html", runs=[run for run, _ in runs], rows=compared([results for _, results in runs]))

    return app

