"""A job's task graph drawn on the server as SVG: columns by depth (a task sits one column right of its
latest upstream task), boxes coloured by the task's state over its parties (the colour is the stylesheet's,
by class, so the page's script can change it as the job runs).

Why on the server: the picture needs no script in the browser (the board's Content-Security-Policy allows
none) and no layout library; a job's DAG has tens of tasks, which a layered layout draws readably.
"""

from __future__ import annotations

from html import escape

from ..jobs.spec import JobSpec

BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 150, 34, 56, 14, 10


def task_state(states: list[str]) -> str:
    """One state for a task from its parties' states: the worst that happened, else the least advanced."""
    for state in ("failed", "cancelled", "running", "queued"):
        if state in states:
            return state
    return "succeeded" if states else "queued"


def dag_svg(spec: JobSpec, states: dict[str, str]) -> str:
    """The task graph of `spec`, each task coloured by `states[task]` (missing: queued)."""
    order = spec.topological_order()
    depth: dict[str, int] = {}
    for task in order:
        depth[task] = 1 + max((depth[up] for up in spec.upstream(task)), default=-1)
    columns: dict[int, list[str]] = {}
    for task in order:
        columns.setdefault(depth[task], []).append(task)
    where = {task: (PAD + d * (BOX_W + GAP_X), PAD + i * (BOX_H + GAP_Y))
             for d, tasks in columns.items() for i, task in enumerate(tasks)}
    width = PAD * 2 + len(columns) * BOX_W + (len(columns) - 1) * GAP_X
    height = PAD * 2 + max(len(t) for t in columns.values()) * (BOX_H + GAP_Y) - GAP_Y
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="task graph" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">']
    for task in order:
        x2, y2 = where[task]
        for up in sorted(spec.upstream(task)):
            x1, y1 = where[up]
            parts.append(f'<path d="M{x1 + BOX_W},{y1 + BOX_H / 2} C{x1 + BOX_W + GAP_X / 2},{y1 + BOX_H / 2} '
                         f'{x2 - GAP_X / 2},{y2 + BOX_H / 2} {x2},{y2 + BOX_H / 2}" fill="none" stroke="#8c959f"/>')
    for task in order:
        x, y = where[task]
        state = states.get(task, "queued")
        label = f"{task} ({spec.tasks[task].component})"
        shown = label if len(label) <= 24 else label[:23] + "…"
        parts.append(f'<g class="task" data-task="{escape(task)}"><title>{escape(label)}: {state}</title>'
                     f'<rect class="{escape(state)}" x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="5" '
                     f'fill="white" stroke-width="2"/>'
                     f'<text x="{x + 8}" y="{y + 21}">{escape(shown)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)
