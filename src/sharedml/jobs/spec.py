"""Job specification: a DAG of component tasks that every party runs in its own role.

The spec names only entries of each party's LOCAL dataset catalog (``$alias`` resolves through the
party's own ``data`` mapping), never paths on another party's machine. Everything that can be checked
before any party starts is checked here, and every problem points at the file, line and field path.
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from sharedml.did_you_mean import suggestion
from sharedml.jobs.yaml_errors import YamlDocument, parse_yaml, read_yaml
from sharedml.net.channel import DEFAULT_MAX_MESSAGE_BYTES

_NAME = r"[A-Za-z][A-Za-z0-9_-]*"
# Job names, job ids and dataset names become folder names and URL path segments: one path component,
# never '.' or '..', no separators, bounded.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DATASET_REF = re.compile(rf"\$({_NAME})")
_OUTPUT_REF = re.compile(rf"({_NAME})\.({_NAME})")


# Roles that serve a protocol without holding data (tuples, keys, aggregation): a dataset input is optional
# for them, and a party of such a role that maps no alias gets no input (the component's default).
DATALESS_ROLES = frozenset({"aggregator", "arbiter", "dealer"})


class JobSpecError(ValueError):
    """A job spec that cannot be loaded; the message lists every problem as ``file, line N, path: ...``."""


@dataclass(frozen=True)
class DatasetRef:
    """``$alias``: a dataset each party resolves through its own ``data`` mapping."""

    alias: str


@dataclass(frozen=True)
class OutputRef:
    """``task.output``: an output of an upstream task."""

    task: str
    output: str


def parse_ref(text: str) -> DatasetRef | OutputRef:
    """Parse an input reference; anything other than ``$alias`` or ``task.output`` is a ValueError."""
    if match := _DATASET_REF.fullmatch(text):
        return DatasetRef(match[1])
    if match := _OUTPUT_REF.fullmatch(text):
        return OutputRef(match[1], match[2])
    raise ValueError(
        "an input must be '$alias' (a dataset of the party) or 'task.output' (an upstream output)"
    )


def _check_ref(text: str) -> str:
    try:
        parse_ref(text)
    except ValueError as exc:
        raise PydanticCustomError("job_reference", "{reason}", {"reason": str(exc)}) from None
    return text


Name = Annotated[str, StringConstraints(pattern=rf"^{_NAME}$")]
SafeName = Annotated[str, StringConstraints(pattern=rf"^{_SAFE_NAME.pattern}$")]
InputRef = Annotated[str, AfterValidator(_check_ref)]


class _StrictModel(BaseModel):
    """Unknown keys are typos and YAML values are never coerced (``timeout: "60"`` is an error)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class PartySpec(_StrictModel):
    """One party: its role in the protocol and the aliases it maps onto its local catalog."""

    role: Annotated[str, StringConstraints(min_length=1)]
    data: dict[Name, SafeName] = Field(default_factory=dict)


class TaskSpec(_StrictModel):
    """One component run; ``parties`` None means every party of the job runs it."""

    component: Annotated[str, StringConstraints(min_length=1)]
    inputs: dict[Name, InputRef] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    parties: Annotated[list[Name], Field(min_length=1)] | None = None
    depends_on: list[Name] = Field(default_factory=list)


class JobSpec(_StrictModel):
    """A whole job; cross-field checks (references, cycles, party data) run on construction."""

    job: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")]
    parties: dict[Name, PartySpec] = Field(min_length=1)
    tasks: dict[Name, TaskSpec] = Field(min_length=1)
    timeout: float = Field(60, gt=0, allow_inf_nan=False)
    max_message_bytes: int = Field(DEFAULT_MAX_MESSAGE_BYTES, gt=0, le=1 << 40,
                                   description="the largest protocol message a party accepts from a peer")

    @model_validator(mode="after")
    def _check_graph(self) -> JobSpec:
        problems = [*self._reference_problems(), *self._cycle_problems()]
        if problems:
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [_job_error(loc, message) for loc, message in problems],
            )
        return self

    def to_yaml(self) -> str:
        """The spec as YAML that `parse_job` reads back to an equal spec: a job built in Python (the API)
        is the same thing as a job file, and can be saved as one."""
        return yaml.safe_dump(self.model_dump(mode="json", exclude_defaults=True), sort_keys=False)

    def parties_for(self, task: str) -> list[str]:
        """Parties that run ``task``, in job order."""
        chosen = self.tasks[task].parties
        return list(self.parties) if chosen is None else [p for p in self.parties if p in chosen]

    def upstream(self, task: str) -> set[str]:
        """Tasks that ``task`` directly needs, through its inputs and ``depends_on``."""
        return set(self._dependencies(task))

    def topological_order(self) -> list[str]:
        """All tasks, each after its upstream tasks; ties broken by YAML order."""
        order, _ = self._sort()
        return order

    def tasks_for(self, party: str) -> list[str]:
        """Tasks ``party`` runs, in topological order."""
        if party not in self.parties:
            raise KeyError(f"party {party!r} is not in job {self.job!r}; parties: {', '.join(self.parties)}")
        return [task for task in self.topological_order() if party in self.parties_for(task)]

    def _dependencies(self, task: str) -> list[str]:
        """Known upstream tasks in declaration order; unknown names are reported by validation instead."""
        spec = self.tasks[task]
        refs = [parse_ref(text) for text in spec.inputs.values()]
        names = [ref.task for ref in refs if isinstance(ref, OutputRef)] + spec.depends_on
        return [name for name in dict.fromkeys(names) if name in self.tasks]

    def _sort(self) -> tuple[list[str], list[str]]:
        """Kahn's algorithm with a YAML-order heap: (ordered tasks, tasks stuck on a cycle)."""
        names = list(self.tasks)
        position = {name: index for index, name in enumerate(names)}
        waiting = {name: len(self._dependencies(name)) for name in names}
        users: dict[str, list[str]] = {name: [] for name in names}
        for name in names:
            for dependency in self._dependencies(name):
                users[dependency].append(name)
        ready = [position[name] for name in names if waiting[name] == 0]
        heapq.heapify(ready)
        order: list[str] = []
        while ready:
            name = names[heapq.heappop(ready)]
            order.append(name)
            for user in users[name]:
                waiting[user] -= 1
                if waiting[user] == 0:
                    heapq.heappush(ready, position[user])
        return order, [name for name in names if waiting[name] > 0]

    def _cycle_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        _, stuck = self._sort()
        if not stuck:
            return []
        # Every stuck task waits on another stuck task, so following those edges must revisit one.
        stuck_set = set(stuck)
        path = [stuck[0]]
        while path[-1] not in path[:-1]:
            path.append(next(dep for dep in self._dependencies(path[-1]) if dep in stuck_set))
        cycle = path[path.index(path[-1]) :][::-1]  # reversed: arrows follow the data flow
        return [(("tasks", cycle[0]), f"dependency cycle: {' -> '.join(cycle)}")]

    def _reference_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for name, task in self.tasks.items():
            for index, party in enumerate(task.parties or []):
                if party not in self.parties:
                    problems.append(
                        (("tasks", name, "parties", index), _unknown("party", party, self.parties))
                    )
            for index, dependency in enumerate(task.depends_on):
                if dependency not in self.tasks:
                    problems.append(
                        (("tasks", name, "depends_on", index), _unknown("task", dependency, self.tasks))
                    )
            for key, text in task.inputs.items():
                problems.extend(
                    (("tasks", name, "inputs", key), message) for message in self._input_problems(name, text)
                )
        return problems

    def _input_problems(self, task: str, text: str) -> list[str]:
        ref = parse_ref(text)
        if isinstance(ref, OutputRef):
            return [] if ref.task in self.tasks else [_unknown("task", ref.task, self.tasks)]
        missing = [p for p in self.parties_for(task)
                   if ref.alias not in self.parties[p].data and self.parties[p].role not in DATALESS_ROLES]
        return [
            f"party '{party}' has no dataset alias '{ref.alias}' in its data "
            f"(its aliases: {', '.join(self.parties[party].data) or 'none'})"
            for party in missing
        ]


def lineage(spec: JobSpec, party: str) -> dict[str, set[str]]:
    """For each task `party` runs, the catalog datasets whose values (or derivatives) it processes."""
    used: dict[str, set[str]] = {}
    for task in spec.tasks_for(party):
        direct = {spec.parties[party].data[ref.alias] for text in spec.tasks[task].inputs.values()
                  if isinstance(ref := parse_ref(text), DatasetRef) and ref.alias in spec.parties[party].data}
        inherited = set().union(*(used.get(upstream, set()) for upstream in spec.upstream(task)))
        used[task] = direct | inherited
    return used


def _unknown(kind: str, name: str, known: dict[str, Any]) -> str:
    return f"unknown {kind} '{name}'{suggestion(name, known)} (known: {', '.join(known)})"


def _job_error(loc: tuple[str | int, ...], message: str) -> InitErrorDetails:
    return {
        "type": PydanticCustomError("job_graph", "{reason}", {"reason": message}),
        "loc": loc,
        "input": None,
    }


def check_name(text: str, what: str) -> str:
    """`text` if it is a safe name (one path component, see _SAFE_NAME), else ValueError naming `what`."""
    if not _SAFE_NAME.fullmatch(text):
        raise ValueError(f"{what} {text[:80]!r} is not a valid name: use 1-128 letters, digits, '_', '-' or '.', "
                         "not starting with '.'")
    return text


def parse_job(text: str, source: str = "<string>") -> JobSpec:
    """Parse and validate a job spec from YAML text; ``source`` names it in error messages."""
    return validate_document(parse_yaml(text, source, JobSpecError))


def load_job(path: str | Path) -> JobSpec:
    """Load and validate a job spec file."""
    return validate_document(read_yaml(path, JobSpecError))


def validate_document(document: YamlDocument) -> JobSpec:
    """Validate parsed YAML as a job spec; errors are located in the document."""
    try:
        return JobSpec.model_validate(document.data)
    except ValidationError as exc:
        raise JobSpecError(document.explain(exc, JobSpec)) from exc
