"""`sharedml node|coordinator|job|model ...`: run the services and talk to the coordinator's API."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ..cli_errors import err_console, fail

console = Console()
node_app = typer.Typer(help="A node: one institution's agent next to its data.", no_args_is_help=True)
coordinator_app = typer.Typer(help="The coordinator: schedules jobs, never sees data.", no_args_is_help=True)
job_app = typer.Typer(help="Jobs on a deployment, through the coordinator's API.", no_args_is_help=True)
model_app = typer.Typer(help="The model registry, through the coordinator's API.", no_args_is_help=True)

Url = Annotated[str | None, typer.Option("--coordinator", help="coordinator URL [$SHAREDML_COORDINATOR]")]
Certs = Annotated[Path | None, typer.Option(help="folder with ca.crt and <identity>.crt/.key [$SHAREDML_CERTS]")]
Identity = Annotated[str | None, typer.Option(help="certificate name to present [$SHAREDML_IDENTITY]")]
FINISHED = ("succeeded", "failed", "cancelled")


def _call(url: str | None, certs: Path | None, identity: str | None, method: str, path: str, **kwargs: Any) -> Any:
    # imported here: the HTTP stack is slow to load, and `sharedml run` needs none of it
    from .client import ApiError, CoordinatorClient

    try:
        client = CoordinatorClient(url, certs, identity)
        try:
            return client.call(method, path, **kwargs)
        finally:
            client.close()
    except ApiError as err:
        fail(str(err))


@node_app.command("start")
def node_start(config: Annotated[Path, typer.Option(help="the node's node.yaml")]) -> None:
    """Run this institution's node until interrupted."""
    from ..jobs.catalog import DatasetError
    from .config import ConfigError
    from .node_api import serve
    from .policy import PolicyError

    try:
        serve(config)
    except (ConfigError, DatasetError, PolicyError, FileNotFoundError) as err:
        fail(str(err))


@node_app.command("status")
def node_status(coordinator: Url = None, certs: Certs = None, identity: Identity = None) -> None:
    """Whether each node answers the coordinator, and what it runs."""
    nodes = _call(coordinator, certs, identity, "GET", "/nodes")
    table = Table("node", "url", "ok", "latency ms", "running / error")
    for party, info in nodes.items():
        detail = ", ".join(info["running"]) if info["ok"] else info["error"]
        table.add_row(party, info["url"], "yes" if info["ok"] else "[red]no[/]", str(info.get("latency_ms", "")),
                      detail or "-")
    console.print(table)
    if not all(info["ok"] for info in nodes.values()):
        raise typer.Exit(1)


@node_app.command("export")
def node_export(config: Annotated[Path, typer.Option(help="the node's node.yaml")],
                job: Annotated[str, typer.Option(help="job id")], task: Annotated[str, typer.Option(help="task")],
                out: Annotated[Path, typer.Option(help="new folder for the outputs")]) -> None:
    """Copy this party's outputs of a task (e.g. its model part) off the node, if its policy allows."""
    from .config import ConfigError, NodeConfig, load_config
    from .node import Node, NodeError
    from .policy import PolicyDenied

    try:
        node = Node(load_config(config, NodeConfig), str(config))
        try:
            node.export_output(job, task, out, actor=f"operator of {node.party}")
        finally:
            node.close()
    except (ConfigError, NodeError, PolicyDenied, FileExistsError) as err:
        fail(str(err))
    console.print(f"outputs of {task} in job {job} copied to {out}")


NodeConfigPath = Annotated[Path, typer.Option("--config", help="the node's node.yaml")]


def _with_node(config: Path, act: Any) -> Any:
    """Run `act(node)` on this machine's node (its own database: the service may be running meanwhile)."""
    from .config import ConfigError, NodeConfig, load_config
    from .node import Node, NodeError
    from .policy import PolicyDenied, PolicyError

    try:
        node = Node(load_config(config, NodeConfig), str(config))
        try:
            return act(node)
        finally:
            node.close()
    except (ConfigError, PolicyError, NodeError, PolicyDenied) as err:
        fail(str(err))


@node_app.command("approvals")
def node_approvals(config: NodeConfigPath) -> None:
    """Jobs waiting for this node's operators (policy `approval: manual`), with what each would do here."""
    pending = _with_node(config, lambda node: node.pending_approvals())
    if not pending:
        console.print("no job is waiting for a decision")
        return
    table = Table("job id", "submitter", "waiting since (UTC)", "tasks here", width=min(80, console.width),
                  title=f"{len(pending)} job(s) waiting for a decision")
    for job in pending:
        table.add_row(job["job_id"], job["submitter"], job["created_at"],
                      str(len(job["tasks"])) + (" [red](now refused)[/]" if job["problem"] else ""))
    console.print(table)
    for job in pending:  # what each would do here, one line per task
        console.print(f"[bold]{job['job_id']}[/] ({job['job']}) submitted by {job['submitter']}", highlight=False)
        for task in job["tasks"]:
            console.print(f"  {task['task']}: {task['component']} on {', '.join(task['datasets']) or 'no dataset'} "
                          f"with {', '.join(task['peers'])}", highlight=False)
        if job["problem"]:
            console.print(f"  [red]the policy would now refuse it:[/] {job['problem']}", highlight=False)


def _operator() -> str:
    import getpass

    return f"operator:{getpass.getuser()}"


@node_app.command("approve")
def node_approve(job_id: Annotated[str, typer.Argument(help="the job's id (`sharedml node approvals`)")],
                 config: NodeConfigPath,
                 reason: Annotated[str, typer.Option(help="recorded in the audit log")] = "") -> None:
    """Approve a waiting job: the policy is checked again, and the audit log records you."""
    _with_node(config, lambda node: node.decide(job_id, True, _operator(), reason))
    console.print(f"job {job_id} approved; the coordinator starts it at its next check", highlight=False)


@node_app.command("reject")
def node_reject(job_id: Annotated[str, typer.Argument(help="the job's id (`sharedml node approvals`)")],
                config: NodeConfigPath,
                reason: Annotated[str, typer.Option(help="why: the submitter sees it")] = "") -> None:
    """Reject a waiting job: it fails at the coordinator with your reason."""
    _with_node(config, lambda node: node.decide(job_id, False, _operator(), reason))
    console.print(f"job {job_id} rejected", highlight=False)


@coordinator_app.command("start")
def coordinator_start(config: Annotated[Path, typer.Option(help="coordinator.yaml")]) -> None:
    """Run the coordinator (API + scheduler) until interrupted; API docs at https://LISTEN/docs."""
    from .config import ConfigError
    from .coordinator_api import serve

    try:
        serve(config)
    except (ConfigError, FileNotFoundError) as err:
        fail(str(err))


@job_app.command("submit")
def job_submit(job: Path, wait: Annotated[bool, typer.Option(help="wait for the job to finish")] = False,
               coordinator: Url = None, certs: Certs = None, identity: Identity = None) -> None:
    """Submit a job file; every node involved must approve it under its policy."""
    if not job.is_file():
        fail(f"job file not found: {job}")
    job_id = _call(coordinator, certs, identity, "POST", "/jobs", json={"spec": job.read_text()})["id"]
    console.print(job_id)
    if wait:
        while (state := _call(coordinator, certs, identity, "GET", f"/jobs/{job_id}"))["state"] not in FINISHED:
            time.sleep(1)
        _print_job(state)
        if state["state"] != "succeeded":
            raise typer.Exit(1)


@job_app.command("status")
def job_status(job_id: Annotated[str | None, typer.Argument(help="a job id; none lists recent jobs")] = None,
               coordinator: Url = None, certs: Certs = None, identity: Identity = None,
               as_json: Annotated[bool, typer.Option("--json", help="print the coordinator's JSON")] = False) -> None:
    """A job's state and each task's state per party (or the latest jobs)."""
    answer = _call(coordinator, certs, identity, "GET", "/jobs" if job_id is None else f"/jobs/{job_id}")
    if as_json:
        typer.echo(json.dumps(answer, indent=2))
    elif job_id is None:
        for job in answer:  # one line each, the full id first
            console.print(f"{job['id']}  {job['state']:9}  {job['created_at']}  {job['finished_at'] or ''}",
                          highlight=False, markup=False, overflow="fold")
    else:
        _print_job(answer)


@job_app.command("logs")
def job_logs(job_id: str, coordinator: Url = None, certs: Certs = None, identity: Identity = None) -> None:
    """The log tails and metrics the nodes reported for each finished task."""
    for report in _call(coordinator, certs, identity, "GET", f"/jobs/{job_id}/logs"):
        console.rule(f"{report['task']} @ {report['party']} (attempt {report['attempt']}): {report['state']}")
        console.print(report["log"], highlight=False, markup=False)
        for metric in report["metrics"].get("metrics", []):
            console.print(f"metric {json.dumps(metric)}", highlight=False, markup=False)


@job_app.command("cancel")
def job_cancel(job_id: str, coordinator: Url = None, certs: Certs = None, identity: Identity = None) -> None:
    """Stop a queued or running job; running tasks are interrupted at every node."""
    _print_job(_call(coordinator, certs, identity, "POST", f"/jobs/{job_id}/cancel"))


@job_app.command("rerun")
def job_rerun(job_id: str, coordinator: Url = None, certs: Certs = None, identity: Identity = None) -> None:
    """Run a failed or cancelled job again from its first unfinished task (earlier outputs are reused)."""
    attempt = _call(coordinator, certs, identity, "POST", f"/jobs/{job_id}/rerun")["attempt"]
    console.print(f"job {job_id} queued again (attempt {attempt})")


@model_app.command("list")
def model_list(name: Annotated[str | None, typer.Option(help="only this model name")] = None,
               coordinator: Url = None, certs: Certs = None, identity: Identity = None,
               as_json: Annotated[bool, typer.Option("--json", help="print the coordinator's JSON")] = False) -> None:
    """Registered models, every version: `name:version id` first, then component, parties and job."""
    models = _call(coordinator, certs, identity, "GET", "/models", params={"name": name} if name else None)
    if as_json:
        typer.echo(json.dumps(models, indent=2))
        return
    for m in models:  # one line each, nothing cut: ids and job ids are what the other commands take
        console.print(f"{m['name']}:{m['version']}  {m['id']}  {m['component']}  {','.join(m['parties'])}  "
                      f"job {m['job_id']}  {m['created_at']}", highlight=False, markup=False, overflow="fold")


@model_app.command("show")
def model_show(ref: Annotated[str, typer.Argument(help="id, name:version or name (latest)")],
               coordinator: Url = None, certs: Certs = None, identity: Identity = None) -> None:
    """A model's metadata: lineage, parties, metrics, and where each party's part lies."""
    console.print_json(json.dumps(_call(coordinator, certs, identity, "GET", f"/models/{ref}")))


@model_app.command("export")
def model_export(ref: str, out: Annotated[Path, typer.Option(help="file for the metadata document")],
                 coordinator: Url = None, certs: Certs = None, identity: Identity = None) -> None:
    """Write a model's metadata document; each party exports its own part with `sharedml node export`."""
    document = _call(coordinator, certs, identity, "GET", f"/models/{ref}/export")
    out.write_text(json.dumps(document, indent=2))
    console.print(f"model {document['model']['name']}:{document['model']['version']} metadata written to {out}")


@model_app.command("import")
def model_import(file: Path, coordinator: Url = None, certs: Certs = None, identity: Identity = None) -> None:
    """Register an exported model's metadata here as a new version of its name."""
    try:
        document = json.loads(file.read_text())
    except (OSError, ValueError) as err:
        fail(f"cannot read model export {file}: {err}")
    model = _call(coordinator, certs, identity, "POST", "/models/import", json=document)
    console.print(f"imported as {model['name']}:{model['version']} (id {model['id']})")


@model_app.command("delete")
def model_delete(ref: str, coordinator: Url = None, certs: Certs = None, identity: Identity = None) -> None:
    """Remove a model version from the registry and its parts from the nodes."""
    result = _call(coordinator, certs, identity, "DELETE", f"/models/{ref}")
    console.print(f"deleted {result['deleted']['name']}:{result['deleted']['version']}; parts: {result['parts']}")


def _print_job(job: dict[str, Any]) -> None:
    colour = {"succeeded": "green", "failed": "red", "cancelled": "yellow"}.get(job["state"], "cyan")
    console.print(f"job {job['id']} ({job['name']}, attempt {job['attempt']}): [bold {colour}]{job['state']}[/]")
    if job["error"]:
        err_console.print(job["error"], style="red", highlight=False, markup=False)
    table = Table("task", "party", "state", "started", "finished", "error")
    for t in job["tasks"]:
        table.add_row(t["task"], t["party"], t["state"], t["started_at"] or "", t["finished_at"] or "",
                      (t["error"] or "")[:120])
    console.print(table)
