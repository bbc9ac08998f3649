"""`sharedml report`: one self-contained HTML page of a job — its tasks, their figures and numbers.

Self-contained on purpose (figures are PNGs inside the page, the style is inline, no script): the page
can be mailed or archived and opens the same anywhere, with nothing to fetch.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable

from matplotlib.figure import Figure

from ..jobs.results import TaskResult
from ..jobs.store import JobRecord
from . import figures

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:72rem;color:#1f2328;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem} h2{font-size:1.15rem;margin-top:2.2rem;border-bottom:1px solid #d0d7de}
.meta{color:#57606a;font-size:.9rem} table{border-collapse:collapse;font-size:.88rem;margin:.6rem 0}
td,th{border:1px solid #d0d7de;padding:.25rem .55rem;text-align:left} th{background:#f6f8fa}
.succeeded{color:#1a7f37} .failed,.cancelled{color:#cf222e} .error{white-space:pre-wrap;color:#cf222e}
.figures{display:flex;flex-wrap:wrap;gap:.8rem} .figures img{border:1px solid #d0d7de;border-radius:4px}
"""
SHOWN_SCALARS = 6  # numbers per row of the task table; a task with figures lists all in its section


def png_bytes(figure: Figure) -> bytes:
    """The figure drawn as PNG."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def png(figure: Figure) -> str:
    """The figure as base64 PNG, for a data: URI."""
    return base64.b64encode(png_bytes(figure)).decode()


def _number(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))


def _task_table(results: Iterable[TaskResult]) -> str:
    rows = []
    for r in results:
        scalars = ", ".join(f"{k} {_number(v)}" for k, v in list(r.scalars().items())[:SHOWN_SCALARS])
        seconds = "" if r.seconds is None else f"{r.seconds:.1f}"
        rows.append(f"<tr><td>{html.escape(r.task)}</td><td>{html.escape(r.party)}</td>"
                    f"<td class='{html.escape(r.state)}'>{html.escape(r.state)}</td><td>{seconds}</td>"
                    f"<td>{scalars}</td></tr>")
    return ("<table><tr><th>task</th><th>party</th><th>state</th><th>seconds</th><th>results</th></tr>"
            + "".join(rows) + "</table>")


def _section(result: TaskResult) -> str:
    drawn, numbers = figures.task_figures(result), result.numbers()
    if not drawn and result.report is None and not result.error:
        return ""  # its numbers are all in the task table
    parts = [f"<h2>{html.escape(result.task)} &middot; {html.escape(result.party)}</h2>"]
    if result.error:
        parts.append(f"<p class='error'>{html.escape(result.error)}</p>")
    if numbers:
        parts.append("<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{_number(v)}</td></tr>"
                                         for k, v in numbers.items()) + "</table>")
    if drawn:
        parts.append("<div class='figures'>" + "".join(
            f"<img alt='{html.escape(f.axes[0].get_title())}' src='data:image/png;base64,{png(f)}'>"
            for f in drawn) + "</div>")
    return "\n".join(parts)


def job_page(job: JobRecord, results: list[TaskResult]) -> str:
    """The HTML page: the job, its task table, then a section per task and party with what it recorded."""
    finished = job.finished_at.isoformat(timespec="seconds") if job.finished_at else "not finished"
    error = f"<p class='error'>{html.escape(job.error)}</p>" if job.error else ""
    sections = "\n".join(filter(None, (_section(r) for r in results)))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(job.name)} — sharedml</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(job.name)} "
            f"<span class='{html.escape(job.state)}'>{html.escape(job.state)}</span></h1>"
            f"<p class='meta'>job {html.escape(job.id)} &middot; created "
            f"{job.created_at.isoformat(timespec='seconds')} &middot; finished {finished}</p>{error}"
            f"{_task_table(results)}\n{sections}</body></html>")
