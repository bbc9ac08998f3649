"""What every board page shares: the templates, the security headers, the static files and the figures of
a task's results.

The headers allow no script but our own file (`static/board.js`), no inline style or script, no framing and
no request to another origin, so an injected string in a job name or a metric cannot run; Jinja2 escapes
every value anyway. Figures are PNGs drawn on the server from a task's metrics, report and feature importance
(`sharedml.viz`), so any component's logged metrics and report show up without code for that component.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape

from ..jobs.results import TaskResult

HEADERS = {  # no script but ours, no framing, nothing fetched from elsewhere
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
                               "style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",  # pages show private results: not kept by the browser or a proxy
}


@lru_cache(maxsize=1)
def templates() -> Environment:
    env = Environment(loader=PackageLoader("sharedml.board", "templates"), autoescape=select_autoescape(),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["number"] = lambda v: f"{v:.4g}" if isinstance(v, float) else v
    env.filters["when"] = lambda t: t.strftime("%Y-%m-%d %H:%M:%S") if t else ""
    return env


def page(name: str, **values: Any) -> HTMLResponse:
    return HTMLResponse(templates().get_template(name).render(**values))


def add_board_basics(app: FastAPI) -> None:
    """Mount the static files under /ui/static and put the security headers on every /ui answer."""
    app.mount("/ui/static", StaticFiles(packages=[("sharedml.board", "static")]), name="board-static")

    @app.middleware("http")
    async def _headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        if request.url.path.startswith("/ui"):
            response.headers.update(HEADERS)
        return response


def can_draw() -> bool:
    """Whether figures can be drawn here (matplotlib, the `viz` extra, is installed)."""
    return importlib.util.find_spec("matplotlib") is not None


def figures_of(result: TaskResult) -> list[Any]:
    """A task's figures at one party (`viz.figures.task_figures`), or none without matplotlib (the `viz`
    extra): the board then shows every number and no figure."""
    try:
        from ..viz.figures import task_figures
    except ImportError:
        return []
    return task_figures(result)


def section_of(result: TaskResult) -> dict[str, Any] | None:
    """A task's results at one party as a page shows them: its numbers and the titles of its figures, each
    figure then drawn by a request of its own (`png_of`), so the page answers at once and the images follow.
    None when there is nothing to show."""
    numbers, titles = result.numbers(), [f.axes[0].get_title() for f in figures_of(result)]
    if not (numbers or titles or result.report is not None):
        return None
    return {"task": result.task, "party": result.party, "numbers": numbers, "titles": titles}


def png_of(result: TaskResult, number: int) -> bytes | None:
    """Figure `number` of a task's results at one party, drawn as PNG (None if it has no such figure)."""
    made = figures_of(result)
    if not 0 <= number < len(made):
        return None
    from ..viz.page import png_bytes  # (there is a figure only where matplotlib is)
    return png_bytes(made[number])


def compared(runs: list[list[TaskResult]]) -> list[tuple[tuple[str, str, str], list[Any]]]:
    """Rows (task, party, figure) -> its value in each run (None where a run lacks it), for side by side."""
    rows: dict[tuple[str, str, str], list[Any]] = {}
    for i, results in enumerate(runs):
        for r in results:
            figures = {k: v for k, v in r.numbers().items() if isinstance(v, int | float)}
            for name, value in figures.items():
                rows.setdefault((r.task, r.party, name), [None] * len(runs))[i] = value
    return sorted(rows.items())
