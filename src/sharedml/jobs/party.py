"""What one party does for a job: run its tasks in DAG order, each as the same component code
that its peers run, with inputs from its own catalog or its own earlier outputs.

On failure the party tells its peers (so they stop now rather than at a timeout), marks the task
failed, and runs nothing further. The same function serves threads, local processes and nodes.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..net.channel import Channel, Transport
from ..net.errors import JobAborted, JobCancelled
from ..runtime.component import code_references, get_component, require_allowed
from ..runtime.context import Context
from .artifacts import PartyArtifacts
from .catalog import Catalog
from .components import load_builtin_components
from .contract import CONTRACT_PARAMS, task_defaults
from .spec import DatasetRef, JobSpec, lineage, parse_ref
from .store import JobStore


@dataclass
class PartyResult:
    party: str
    state: str  # succeeded | failed | cancelled
    error: str | None = None
    failed_task: str | None = None
    caused_by: str | None = None  # the party whose failure stopped this one, if another
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    traffic: dict[str, dict[str, int]] = field(default_factory=dict)
    resources: dict[str, float] = field(default_factory=dict)  # cpu_s, peak_rss_mb: only as its own process

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


def run_party(spec: JobSpec, job_id: str, party: str, catalog: Catalog, transport: Transport,
              artifacts_root: Path, store: JobStore | None = None,
              timeout: float | None = None,
              on_progress: Callable[[str, float, float, str], None] | None = None,
              only: Collection[str] | None = None, allowed_code: Collection[str] = ()) -> PartyResult:
    """Run every task of `spec` that `party` takes part in; never raises for a task failure.

    `only` restricts the run to those tasks (a node runs one task at a time as the coordinator
    dispatches it); their upstream outputs are then read from earlier runs' artifacts, and a failure
    is announced only to the parties of the failed task, the ones running now. `allowed_code`: the code
    references (`package.module:function`) this party's operator allows a job to name; any other is
    refused before the task sends a message.
    """
    load_builtin_components()
    log = logging.getLogger(f"sharedml.party.{party}")
    artifacts = PartyArtifacts(artifacts_root, job_id, party)
    result = PartyResult(party, "succeeded")
    wait = spec.timeout if timeout is None else timeout
    if on_progress is None and store is not None:
        on_progress = _progress_writer(store, job_id, party)
    for task in spec.tasks_for(party):
        if only is not None and task not in only:
            continue
        task_spec = spec.tasks[task]
        parties = spec.parties_for(task)
        channel = Channel(transport, job_id, task, parties, wait)
        _set_state(store, job_id, task, party, "running")
        log.info("task %s (%s) started", task, task_spec.component)
        try:
            comp = get_component(task_spec.component)
            params = comp.params.model_validate(_with_contract(spec, party, catalog, task, comp.params))
            for reference in sorted(code_references(params)):
                require_allowed(reference, allowed_code, party)
            inputs = {name: _resolve(spec, party, catalog, artifacts, text)
                      for name, text in task_spec.inputs.items() if _produced_for(spec, party, text)}
            ctx = Context(party, {p: spec.parties[p].role for p in parties}, job_id, task, channel,
                          artifacts.begin(task), log=log, on_progress=on_progress, allowed_code=frozenset(allowed_code),
                          resume_dir=artifacts_root / "_resume" / job_id / party / task)
            outputs = comp.func(ctx, params, **inputs)
            traffic = channel.stats.snapshot()
            written = artifacts.save(task, outputs or {}, ctx.metrics.records, traffic)
        except BaseException as err:  # noqa: BLE001 - every failure ends the party's job, reported below
            peers = spec.parties if only is None else spec.parties_for(task)
            _fail(result, job_id, task, party, err, transport, artifacts, store, log, peers)
            if isinstance(err, KeyboardInterrupt):
                raise
            return result
        result.outputs[task] = {name: str(path) for name, path in written.items()}
        result.traffic[task] = traffic
        _set_state(store, job_id, task, party, "succeeded")
        log.info("task %s succeeded", task)
    transport.mailbox.forget_job(job_id)
    return result


def _with_contract(spec: JobSpec, party: str, catalog: Catalog, task: str, model: type) -> dict[str, Any]:
    """The task's params, plus what the contracts of the datasets it uses (directly or through earlier
    tasks' outputs) declare, for the params the component has and the task leaves out."""
    used = lineage(spec, party)[task]
    declared = task_defaults((catalog.entry(name) for name in sorted(used)), task,
                             f"party {party!r}, datasets {', '.join(sorted(used))}")
    params = dict(spec.tasks[task].params)
    for name in CONTRACT_PARAMS:
        if name in declared and name in model.model_fields and name not in params:
            params[name] = declared[name]
    return params


def _produced_for(spec: JobSpec, party: str, text: str) -> bool:
    """False for an output of a task this party does not run, or a dataset alias it does not map (a dealer's
    or an aggregator's view of the data): the component then gets the input's default, None."""
    ref = parse_ref(text)
    if isinstance(ref, DatasetRef):
        return ref.alias in spec.parties[party].data
    return party in spec.parties_for(ref.task)


def _resolve(spec: JobSpec, party: str, catalog: Catalog, artifacts: PartyArtifacts, text: str) -> Any:
    ref = parse_ref(text)
    if isinstance(ref, DatasetRef):
        return catalog.read(spec.parties[party].data[ref.alias], party)
    return artifacts.load(ref.task, ref.output)


def _fail(result: PartyResult, job_id: str, task: str, party: str, err: BaseException,
          transport: Transport, artifacts: PartyArtifacts, store: JobStore | None,
          log: logging.Logger, peers: Iterable[str]) -> None:
    if isinstance(err, JobAborted):
        state, message, result.caused_by = "failed", str(err), err.party
    elif isinstance(err, JobCancelled | KeyboardInterrupt):
        state, message = "cancelled", f"job cancelled while party {party!r} ran task {task!r}"
    else:
        state, message = "failed", f"party {party!r} failed in task {task!r}: {type(err).__name__}: {err}"
        log.error("%s", message)
        # ValueError and PermissionError are how data, parameter and policy problems are reported: the message
        # says it all. Anything else may be a bug, whose traceback the operator needs.
        log.log(logging.DEBUG if isinstance(err, ValueError | PermissionError) else logging.ERROR,
                "traceback of the failure:\n%s", "".join(traceback.format_exception(err)))
    # Tell every party that may wait for us, so none waits until a timeout: in a whole-job run that is every
    # party of the job, not only this task's.
    if not isinstance(err, JobAborted):
        transport.abort_job(job_id, message, [p for p in peers if p != party])
    result.state, result.error, result.failed_task = state, message, task
    artifacts.fail(task, message)
    _set_state(store, job_id, task, party, state, message)
    log.info("task %s %s: %s", task, state, message)


def _progress_writer(store: JobStore, job_id: str, party: str,
                     interval: float = 0.5) -> Callable[[str, float, float, str], None]:
    """Progress reports into the job store, at most one write per `interval` seconds but the last."""
    last = [0.0]

    def write(task: str, done: float, total: float, message: str) -> None:
        now = time.monotonic()
        if done >= total or now - last[0] >= interval:
            last[0] = now
            store.set_progress(job_id, task, party, done, total, message)
    return write


def _set_state(store: JobStore | None, job_id: str, task: str, party: str, state: str,
               error: str | None = None) -> None:
    if store is not None:
        store.set_task_state(job_id, task, party, state, error)
