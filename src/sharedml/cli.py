"""The `sharedml` command line."""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from .board.cli import user_app
from .cli_errors import err_console, fail, show_tracebacks
from .deploy.cli import coordinator_app, job_app, model_app, node_app
from .did_you_mean import suggestion
from .jobs.catalog import Catalog, DatasetError
from .jobs.runner import MODES, JobResult, LocalRunner
from .jobs.spec import JobSpecError
from .jobs.store import JobStore, ProgressRecord, sqlite_url
from .private_files import write_bytes_atomic
from .serving.cli import app as serve_app
from .tee.cli import app as tee_app

app = typer.Typer(help="sharedml: shared machine learning across data silos.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
certs_app = typer.Typer(help="Federation certificates for mutual TLS.", no_args_is_help=True)


def _print_version(shown: bool) -> None:
    if shown:
        from . import __version__

        console.print(f"sharedml {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(debug: Annotated[bool, typer.Option("--debug", help="show log records and tracebacks of failures")]
             = False,
             version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                   help="print the version and exit")] = False) -> None:
    """Without --debug a failed job prints its error once, with no traceback; with it, every party's log and
    the traceback behind an error message."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, force=True)
    show_tracebacks(debug)
    # Without --debug the job's result names a failure; the parties' own records would repeat it.
    logging.getLogger("sharedml.party").setLevel(logging.NOTSET if debug else logging.CRITICAL)


coordinator_app.add_typer(user_app("coordinator", parties=True), name="user")
node_app.add_typer(user_app("node", parties=False), name="user")
app.add_typer(certs_app, name="certs")
app.add_typer(node_app, name="node")
app.add_typer(coordinator_app, name="coordinator")
app.add_typer(job_app, name="job")
app.add_typer(model_app, name="model")
app.add_typer(tee_app, name="tee")
app.add_typer(serve_app, name="serve")
console = Console()


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        fail(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    return mode


@certs_app.command("init")
def certs_init(
    parties: Annotated[str, typer.Option(help="comma-separated party names, e.g. bank,telco,shop")],
    out: Annotated[Path, typer.Option(help="directory for ca.crt/ca.key and <party>.crt/.key")],
) -> None:
    """Create a federation CA (or reuse the one in OUT) and a key + certificate per party."""
    from .net.certs import init_federation

    names = [p.strip() for p in parties.split(",") if p.strip()]
    if not names:
        fail("--parties needs at least one name")
    try:
        init_federation(names, out)
    except ValueError as err:
        fail(str(err))
    console.print(f"CA and certificates for {', '.join(names)} written to {out}")
    console.print("Keep each <party>.key at that party only; ca.key signs new members — guard it.")


def _parse_catalogs(entries: list[str]) -> dict[str, Catalog]:
    catalogs = {}
    for entry in entries:
        party, sep, path = entry.partition("=")
        if not sep or not party or not path:
            fail(f"--catalog takes PARTY=FILE, got {entry!r}")
        catalogs[party] = Catalog.load(path)
    return catalogs


@app.command()
def validate(job: Path) -> None:
    """Check a job file: syntax, fields, references, DAG, components and their params."""
    from .jobs.components import load_checked_job

    try:
        spec = load_checked_job(job)
    except JobSpecError as err:
        fail(str(err))
    console.print(f"{job}: job {spec.job!r} is valid; task order: {' -> '.join(spec.topological_order())}")


@app.command()
def run(
    job: Path,
    catalog: Annotated[list[str], typer.Option(help="PARTY=FILE: a party's local dataset catalog (repeat)")],
    mode: Annotated[str, typer.Option(help="threads (in-memory) or processes (gRPC + mutual TLS)")] = "threads",
    workdir: Annotated[Path, typer.Option(help="where job outputs and the job database go")] = Path("sharedml-runs"),
    timeout: Annotated[float | None, typer.Option(help="seconds to wait for a peer (default: the job's)")] = None,
    allow_code: Annotated[list[str] | None, typer.Option(
        help="package.module:function the job may make the parties import and call, e.g. a model factory "
             "(repeat; none by default)")] = None,
    rerun: Annotated[str | None, typer.Option(
        help="id of a failed run of this job to run again under that id, resuming saved work (PSI)")] = None,
) -> None:
    """Run a job with every party on this machine."""
    from .jobs.components import load_checked_job

    _check_mode(mode)
    try:
        catalogs = _parse_catalogs(catalog)
        spec = load_checked_job(job)
        with _ProgressBars() as bars:
            result = LocalRunner(workdir).run(spec, catalogs, mode=mode, timeout=timeout,
                                              spec_text=job.read_text(), on_progress=bars.update_all,
                                              allowed_code=allow_code or (), rerun=rerun)
    except (JobSpecError, DatasetError, ValueError) as err:
        fail(str(err))
    except KeyboardInterrupt:
        fail("cancelled (Ctrl-C); every party was stopped", 130)
    _print_result(result)
    if result.state != "succeeded":
        raise typer.Exit(1)


def _store(workdir: Path) -> JobStore:
    db = workdir / "sharedml.db"
    if not db.exists():
        fail(f"no job database at {db}; run a job first or pass --workdir")
    return JobStore(sqlite_url(db))


def _print_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@app.command()
def jobs(workdir: Annotated[Path, typer.Option(help="the runs directory")] = Path("sharedml-runs"),
         as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """List jobs run from this directory, newest first: full id, state, start and task states."""
    store = _store(workdir)
    listed = []
    for record in store.jobs():
        states = Counter(t.state for t in store.tasks(record.id))
        listed.append({"id": record.id, "state": record.state, "started": record.started_at,
                       "finished": record.finished_at, "tasks": dict(states), "error": record.error})
    if as_json:
        _print_json(listed)
        return
    for job in listed:
        started = job["started"].strftime("%Y-%m-%d %H:%M:%S") if job["started"] else "-"
        tasks = ", ".join(f"{n} {s}" for s, n in job["tasks"].items())
        console.print(f"{job['id']}  {job['state']:9}  {started}  {tasks}", highlight=False, markup=False,
                      overflow="fold")


@app.command()
def components(name: Annotated[str | None, typer.Argument(help="a component to describe in full")] = None,
               as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """List the components a job can use, or describe one: roles, inputs, outputs, every parameter."""
    from .jobs.components import load_builtin_components
    from .runtime.component import registered
    from .runtime.component_docs import describe, summary

    load_builtin_components()
    known = registered()
    if name is None:
        if as_json:
            _print_json([describe(c) for c in known.values()])
            return
        width = max(len(n) for n in known) + 2
        for comp in known.values():
            line = f"{comp.name:{width}}{summary(comp)}"
            limit = console.width - 1
            console.print(line if len(line) <= limit else line[:limit - 1] + "…", markup=False, highlight=False)
        console.print("\n`sharedml components NAME` shows a component's parameters.", markup=False, highlight=False)
        return
    if name not in known:
        fail(f"unknown component {name!r}{suggestion(name, known)} (`sharedml components` lists them)")
    about = describe(known[name])
    if as_json:
        _print_json(about)
        return
    _print_component(about)


def _print_component(about: dict) -> None:
    say = functools.partial(console.print, markup=False, highlight=False)
    say(f"{about['name']}: {' '.join(about['description'].split())}")
    say(f"roles:    {', '.join(about['roles']) if about['roles'] else 'any'} "
        f"(at least {about['min_parties']} parties)")
    optional = [f"{i} (optional)" for i in about["optional_inputs"]]
    say(f"inputs:   {', '.join(about['inputs'] + optional) or 'none'}")
    say(f"outputs:  {', '.join(about['outputs'])}")
    say("parameters:")
    for param in about["parameters"]:
        default = param["default"] if isinstance(param["default"], str) else json.dumps(param["default"])
        default = "None" if default == "null" else default
        bounds = f", {param['range']}" if param["range"] else ""
        say(f"  {param['name']}: {param['type']} = {default}{bounds}")
        if param["description"]:
            for line in textwrap.wrap(param["description"], max(40, console.width - 6)):
                say(f"      {line}")


@app.command()
def show(job_id: Annotated[str, typer.Argument(help="the job's id (`sharedml jobs` lists them)")],
         task: Annotated[str | None, typer.Argument(help="only this task")] = None,
         workdir: Annotated[Path, typer.Option(help="the runs directory")] = Path("sharedml-runs"),
         as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """A job's results: each task's state per party, its figures, per-step curves, reports and importance."""
    from .jobs.results import JobNotFound, collect

    try:
        job, results = collect(workdir.resolve(), _store(workdir), job_id)
    except JobNotFound as err:
        fail(str(err))
    if task is not None:
        tasks = sorted({r.task for r in results})
        if task not in tasks:
            fail(f"job {job_id} has no task {task!r}{suggestion(task, tasks)} (its tasks: {', '.join(tasks)})")
        results = [r for r in results if r.task == task]
    if as_json:
        _print_json({"id": job.id, "name": job.name, "state": job.state, "error": job.error,
                     "tasks": [_result_json(r) for r in results]})
        return
    say = functools.partial(console.print, markup=False, highlight=False)
    say(f"job {job.id} ({job.name}): {job.state}")
    if job.error:
        say(f"error: {job.error}")
    for r in results:
        seconds = "" if r.seconds is None else f" in {r.seconds:.1f} s"
        say(f"\n{r.task} @ {r.party}: {r.state}{seconds}")
        if r.error and r.state != "succeeded":
            say(f"  error: {r.error}")
        scalars = {**r.scalars(), **{k: v for k, v in (r.report or {}).items() if isinstance(v, int | float)}}
        if scalars:
            say("  " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in scalars.items()))
        for name, points in _curves(r).items():
            values = [v for _, v in points]
            say(f"  {name} over {len(points)} steps: first {values[0]:.4g}, last {values[-1]:.4g}, "
                f"best {min(values):.4g} / {max(values):.4g}")
        if r.importance is not None and len(r.importance):
            value = r.importance.columns[1]
            top = r.importance.sort_values(value, ascending=False).head(8)
            say(f"  importance ({value}): " + ", ".join(f"{f} {v:g}" for f, v in zip(top.iloc[:, 0], top[value],
                                                                                    strict=True)))


def _curves(result) -> dict[str, list[tuple[float, float]]]:
    curves: dict[str, list[tuple[float, float]]] = {}
    for record in result.metrics:
        if record.get("step") is not None and isinstance(record.get("value"), int | float):
            curves.setdefault(record["name"], []).append((record["step"], record["value"]))
    return {name: sorted(points) for name, points in curves.items() if len(points) > 1}


def _result_json(result) -> dict:
    return {"task": result.task, "party": result.party, "state": result.state, "error": result.error,
            "seconds": result.seconds, "metrics": result.scalars(), "curves": _curves(result),
            "report": result.report,
            "importance": None if result.importance is None else result.importance.to_dict("records")}


@app.command()
def report(job_id: Annotated[str, typer.Argument(help="the job's id (`sharedml jobs` lists them)")],
           output: Annotated[Path, typer.Option("--output", "-o", help="the HTML file to write")] = Path("report.html"),
           workdir: Annotated[Path, typer.Option(help="the runs directory")] = Path("sharedml-runs")) -> None:
    """Write a job's results as one self-contained HTML page: ROC, PR, KS, lift/gain, curves, importance."""
    from .jobs.results import JobNotFound, collect

    try:
        from .viz.page import job_page
    except ImportError as err:
        fail(str(err))
    try:
        job, results = collect(workdir.resolve(), _store(workdir), job_id)
    except JobNotFound as err:
        fail(str(err))
    write_bytes_atomic(output, job_page(job, results).encode())
    console.print(f"wrote {output} ({output.stat().st_size:,} bytes)", highlight=False)


@app.command()
def board(workdir: Annotated[Path, typer.Option(help="the runs directory to show")] = Path("sharedml-runs"),
          port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 8450) -> None:
    """Serve read-only web pages of the jobs in a runs directory on this machine: states, the task graph,
    figures, reports, comparisons (http://127.0.0.1:PORT/ui)."""
    from .board.local import local_board
    from .net.https import server

    try:
        app_ = local_board(workdir)
    except FileNotFoundError as err:
        fail(str(err))
    console.print(f"board of {workdir.resolve()} at http://127.0.0.1:{port}/ui (Ctrl-C stops it)", highlight=False)
    server(app_, f"127.0.0.1:{port}", None).run()


def _board_demo(workdir: Path, port: int) -> None:
    from .demo_board import USERS, start_board_demo

    console.rule("[bold]sharedml demo --board")
    with console.status("starting two nodes and a coordinator (each its own process, mutual TLS)..."):
        started = start_board_demo(workdir, port)
    console.print(f"Board: [bold]{started.url}[/]\n  (the federation's own CA signed its certificate: your "
                  "browser will warn once)", highlight=False)
    for name, (role, party) in USERS.items():
        sees = f", sees {party}'s results" if party else ""
        console.print(f"  log in as [bold]{name}[/] ({role}{sees})", highlight=False)
    console.print(f"  password (all three, this run only): [bold]{started.password}[/]", highlight=False)
    console.print("Jobs submitted:\n" + "\n".join(f"  {job_id}" for job_id in started.job_ids), highlight=False)
    if importlib.util.find_spec("matplotlib") is None:
        console.print("Figures (ROC and other curves) need matplotlib: pip install 'sharedml[viz]'", markup=False,
                      highlight=False)
    console.print(f"Files under {workdir}. Ctrl-C stops everything.", highlight=False)
    try:
        while all(proc.poll() is None for proc in started.deployment.procs.values()):
            time.sleep(1)
        console.print("[red]a service stopped; its log is under " + str(workdir), highlight=False)
    except KeyboardInterrupt:
        pass
    finally:
        started.deployment.stop()


@app.command()
def demo(
    mode: Annotated[str, typer.Option(help="processes (one OS process per party, gRPC + mutual TLS) "
                                           "or threads (in-memory)")] = "processes",
    workdir: Annotated[Path, typer.Option(help="where the demo writes its files")] = Path("sharedml-demo"),
    timeout: Annotated[float, typer.Option(help="seconds a party waits for a peer")] = 120.0,
    rows: Annotated[int, typer.Option(help="clients each party of the vertical job holds")] = 27_000,
    trees: Annotated[int, typer.Option(help="SecureBoost trees")] = 5,
    depth: Annotated[int, typer.Option(help="SecureBoost tree depth")] = 4,
    online: Annotated[bool, typer.Option(help="serve the trained SecureBoost model online and query it")] = True,
    board: Annotated[bool, typer.Option(help="instead: start a coordinator with its board and two nodes, submit "
                                             "two vertical jobs, and serve until Ctrl-C")] = False,
    port: Annotated[int, typer.Option(help="with --board: the coordinator's port on 127.0.0.1")] = 8440,
) -> None:
    """Run the example jobs: vertical (PSI, binning, SecureBoost, prediction, evaluation), the trained model
    served online, then horizontal (secure sum, statistics). With --board, a deployment with the board."""
    from .demo import run_demo
    from .demo_vertical import run_vertical

    if board:
        _board_demo(workdir.resolve() / "board", port)
        return
    _check_mode(mode)
    console.rule("[bold]sharedml demo")
    transport = "gRPC + mutual TLS, one process per party" if mode == "processes" else "in-memory"
    try:
        console.print(f"Part 1, vertical: a bank (labels) and an insurer hold different columns of partly the same "
                      f"clients; transport: {transport}.")
        with console.status("running PSI, binning, SecureBoost, prediction and evaluation..."):
            vertical = run_vertical(workdir.resolve() / "vertical", mode, timeout, rows, trees, depth)
        _print_result(vertical.result)
        if vertical.result.state != "succeeded":
            raise typer.Exit(1)
        _print_vertical(vertical)
        if online:
            _serve_online(workdir.resolve() / "online", vertical)
        console.print("\nPart 3, horizontal: a bank, an insurer and a shop each hold their own rows.")
        with console.status("running secure_sum, then federated_stats..."):
            outcome = run_demo(workdir.resolve() / "horizontal", mode, timeout)
    except KeyboardInterrupt:
        fail("cancelled (Ctrl-C); every party was stopped", 130)
    result = outcome.result
    _print_result(result)
    if result.state != "succeeded":
        raise typer.Exit(1)
    _print_horizontal(outcome)


def _print_vertical(vertical) -> None:
    result = vertical.result
    console.rule("psi")
    size = result.output("bank", "align", "size")
    console.print(f"bank and insurer share {size:,} clients (expected {vertical.shared:,}); "
                  "neither saw the other's other IDs")
    console.rule("hetero_binning")
    iv = sorted(result.output("bank", "bins", "model")["iv"].items(), key=lambda item: -item[1])
    console.print("information value at the bank (the insurer's columns under anonymous keys): " +
                  ", ".join(f"{key} {value:.3f}" for key, value in iv[:5]))
    console.rule("hetero_secureboost")
    console.print(f"SecureBoost AUC at the bank: {vertical.auc:.4f}   {vertical.reference}: "
                  f"{vertical.reference_auc:.4f}   (difference {vertical.auc - vertical.reference_auc:+.4f})")
    importance = result.output("insurer", "boost", "importance")
    console.print("the insurer's own feature importance (only it sees this): " +
                  ", ".join(f"{r.feature} {r.splits}" for r in importance.head(5).itertuples()))
    console.print(f"job file: {vertical.job_path}\noutputs:  {result.workdir / result.job_id}\n"
                  f"pages:    sharedml board --workdir {result.workdir}")


def _serve_online(workdir: Path, vertical) -> None:
    from .demo_online import run_online

    console.print("\nPart 2, online: the bank and the insurer each serve their part of the SecureBoost model "
                  "(`sharedml serve`), one process each, mutual TLS; the bank asks the insurer once per request.")
    features = {party: path.parent / "clients.csv" for party, path in vertical.catalog_paths.items()}
    with console.status("starting a host and a guest replica, asking for predictions..."):
        online = run_online(workdir, vertical.result, features)
    console.rule("online prediction")
    console.print(f"{online.equal} of {len(online.ids)} online scores equal the batch job's bit for bit; "
                  f"one request for all of them took {online.batch_ms:.0f} ms, a request for one id "
                  f"{online.single_ms:.1f} ms (median)")
    if online.equal != len(online.ids):
        raise typer.Exit(1)


def _print_horizontal(outcome) -> None:
    from .demo import PRIVATE_VALUES, plaintext_check

    result = outcome.result
    values = ", ".join(f"{p} {v}" for p, v in PRIVATE_VALUES.items())
    console.rule("secure_sum")
    for party in result.parties:
        total = result.output(party, "total", "result")["total"].iloc[0]
        console.print(f"{party:8} learned the total {total:g}")
    console.print(f"(private inputs, never sent in the clear: {values})")

    console.rule("federated_stats (each party learns the same table)")
    stats = result.output("bank", "stats", "stats")
    table = Table("column", "count", "mean", "std", "min", "max")
    for row in stats.itertuples():
        table.add_row(row.column, f"{row.count:,}", f"{row.mean:,.4f}", f"{row.std:,.4f}",
                      f"{row.min:,.4g}", f"{row.max:,.4g}")
    console.print(table)
    check = plaintext_check(stats, outcome.pooled)
    console.print("max relative difference from pandas on the pooled rows (which no party has): " +
                  ", ".join(f"{k} {v:.1e}" for k, v in check.iloc[0].items()))
    console.print(f"\njob file: {outcome.job_path}\noutputs:  {result.workdir / result.job_id}")
    console.print(f"replay:   sharedml run {outcome.job_path} " +
                  " ".join(f"--catalog {p}={c}" for p, c in outcome.catalog_paths.items()))


class _ProgressBars(Progress):
    """One bar per (task, party) that reports progress, e.g. PSI buckets."""

    def __init__(self) -> None:
        super().__init__(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                         TextColumn("{task.fields[note]}"), TimeElapsedColumn(), console=console, transient=False)
        self._bars: dict[tuple[str, str], TaskID] = {}

    def update_all(self, records: list[ProgressRecord]) -> None:
        for r in records:
            key = (r.task, r.party)
            if key not in self._bars:
                self._bars[key] = self.add_task(f"{r.task} @ {r.party}", total=r.total, note="")
            self.update(self._bars[key], completed=r.done, total=r.total, note=r.message)



def _print_result(result: JobResult) -> None:
    colour = {"succeeded": "green", "failed": "red", "cancelled": "yellow"}[result.state]
    console.print(f"job {result.job_id}: [bold {colour}]{result.state}[/]")
    if result.error:
        err_console.print(f"[red]{result.error}[/]", highlight=False)
    table = Table("party", "state", "bytes sent", "bytes received")
    for party, outcome in result.parties.items():
        sent = sum(peer["bytes_sent"] for task in outcome.traffic.values() for peer in task.values())
        recv = sum(peer["bytes_recv"] for task in outcome.traffic.values() for peer in task.values())
        table.add_row(party, outcome.state, f"{sent:,}", f"{recv:,}")
    console.print(table)
    for party, outcome in result.parties.items():  # evaluation reports, where the job made any
        for task, outputs in outcome.outputs.items():
            if "report" in outputs:
                report = result.output(party, task, "report")
                figures = ", ".join(f"{name} {value:.4f}" for name, value in report.items()
                                    if isinstance(value, float) and name != "threshold")
                console.print(f"{task} at {party}: {figures}")


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    app()


if __name__ == "__main__":
    sys.exit(main())
