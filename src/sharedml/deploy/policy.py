"""A node's data-use policy: per dataset, which peers, submitters and components may use it, and whether
results derived from it may leave the node; what tasks that use none of its data may run (an aggregator's,
a dealer's); and which code a job may name (model factories).

The node checks its policy itself, on approval and again on every task it is asked to run, so a
coordinator cannot skip it. "Use" follows lineage: a task uses a dataset when it reads it or any
earlier output of this party derived from it, and everyone else in the job counts as a peer, since
derived values can travel on through later tasks. Anything not listed is denied, except that a rule's
`submitters` default to any federation member.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from ..jobs.components import load_builtin_components
from ..jobs.spec import JobSpec, lineage
from ..jobs.yaml_errors import read_yaml
from ..runtime.component import CodeRef, code_references, get_component

ANY = "*"
Name = Annotated[str, StringConstraints(min_length=1)]


def _anyone() -> list[str]:
    return [ANY]


class PolicyError(ValueError):
    """A policy file that cannot be loaded (names file, line and field)."""


class PolicyDenied(Exception):
    """A use the policy does not allow; names the node, the rule and what would allow it."""

    def __init__(self, node: str, rule: str, reason: str, fix: str) -> None:
        self.node, self.rule, self.reason, self.fix = node, rule, reason, fix
        super().__init__(f"node {node!r} denied by policy rule '{rule}': {reason}; to allow it: {fix}")


class DatasetRule(BaseModel):
    """What one dataset may be used for."""

    model_config = ConfigDict(extra="forbid", strict=True)

    peers: list[Name] = Field(default_factory=list, description="parties a job using it may include; '*' any")
    components: list[Name] = Field(default_factory=list, description="components that may process it; '*' any")
    submitters: list[Name] = Field(default_factory=_anyone, description="certificate names whose jobs may use it; "
                                                                          "'*' (the default) any member")
    outputs_may_leave: bool = Field(False, description="may models/predictions derived from it be exported")


class DatalessRule(BaseModel):
    """What a task that uses none of this node's datasets may run: it still spends the node's CPU and may
    hold keys (an aggregator, a dealer, an arbiter), so it is not free for anyone either."""

    model_config = ConfigDict(extra="forbid", strict=True)

    components: list[Name] = Field(default_factory=list, description="components it may run; '*' any; none if unset")
    submitters: list[Name] = Field(default_factory=_anyone, description="certificate names whose jobs it may serve")


class Policy(BaseModel):
    """A node's policy file: ``datasets: {name: rule}`` (unlisted datasets are not shared at all),
    ``dataless`` (tasks using no dataset), ``code`` (code references a job may name) and ``approval`` (whether
    an operator must also approve each job)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    datasets: dict[Name, DatasetRule] = Field(default_factory=dict)
    dataless: DatalessRule = Field(default_factory=DatalessRule)
    code: list[CodeRef] = Field(default_factory=list, description="'package.module:function' names a job may "
                                "make this node import and call (model factories); none if unset")
    approval: Literal["auto", "manual"] = Field("auto", description="auto: a job the rules allow is approved at "
                                                "once; manual: it also waits for an operator's decision (`sharedml "
                                                "node approve`, or the node's board)")

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        document = read_yaml(path, PolicyError)
        try:
            return cls.model_validate(document.data or {})
        except ValidationError as exc:
            raise PolicyError(document.explain(exc, cls)) from exc


class PolicyChecker:
    """Applies one node's policy to jobs."""

    def __init__(self, node: str, policy: Policy, source: str) -> None:
        self.node, self.policy, self.source = node, policy, source

    def check_task(self, spec: JobSpec, task: str, submitter: str) -> set[str]:
        """The datasets `task` uses at this node, or PolicyDenied for the first rule it breaks."""
        datasets = lineage(spec, self.node)[task]
        peers = [p for p in spec.parties if p != self.node]
        component = spec.tasks[task].component
        self._check_code(task, component, spec.tasks[task].params)
        if not datasets:
            self._check_dataless(spec, task, component, submitter)
        for dataset in sorted(datasets):
            rule = self._rule(dataset)
            if ANY not in rule.submitters and submitter not in rule.submitters:
                raise PolicyDenied(self.node, f"datasets.{dataset}.submitters",
                                   f"job {spec.job!r} was submitted by {submitter!r}, whose jobs may not use dataset "
                                   f"{dataset!r} (allowed submitters: {', '.join(rule.submitters) or 'none'})",
                                   f"add {submitter!r} to datasets.{dataset}.submitters in {self.source}")
            for peer in peers:
                if ANY not in rule.peers and peer not in rule.peers:
                    raise PolicyDenied(self.node, f"datasets.{dataset}.peers",
                                       f"job {spec.job!r} includes party {peer!r}, which may not use dataset "
                                       f"{dataset!r} (allowed peers: {', '.join(rule.peers) or 'none'})",
                                       f"add {peer!r} to datasets.{dataset}.peers in {self.source}")
            if ANY not in rule.components and component not in rule.components:
                raise PolicyDenied(self.node, f"datasets.{dataset}.components",
                                   f"task {task!r} runs component {component!r} on dataset {dataset!r} "
                                   f"(allowed components: {', '.join(rule.components) or 'none'})",
                                   f"add {component!r} to datasets.{dataset}.components in {self.source}")
        return datasets

    def check_job(self, spec: JobSpec, submitter: str) -> dict[str, set[str]]:
        """Every task this node would run, checked up front: {task: datasets used}."""
        return {task: self.check_task(spec, task, submitter) for task in spec.tasks_for(self.node)}

    def _check_dataless(self, spec: JobSpec, task: str, component: str, submitter: str) -> None:
        rule = self.policy.dataless
        if ANY not in rule.components and component not in rule.components:
            raise PolicyDenied(self.node, "dataless.components",
                               f"task {task!r} runs component {component!r} here without any of this node's data "
                               f"(allowed: {', '.join(rule.components) or 'none'})",
                               f"add {component!r} to dataless.components in {self.source}")
        if ANY not in rule.submitters and submitter not in rule.submitters:
            raise PolicyDenied(self.node, "dataless.submitters",
                               f"job {spec.job!r} was submitted by {submitter!r}, whose jobs this node does not "
                               f"serve without data (allowed: {', '.join(rule.submitters) or 'none'})",
                               f"add {submitter!r} to dataless.submitters in {self.source}")

    def _check_code(self, task: str, component: str, params: dict) -> None:
        """Code a task's params name (e.g. a model factory) must be on the node's `code` list."""
        load_builtin_components()
        for reference in sorted(code_references(get_component(component).params.model_validate(params))):
            if reference not in self.policy.code:
                raise PolicyDenied(self.node, "code",
                                   f"task {task!r} names code {reference!r}, which this node does not allow a job "
                                   "to import and call", f"add {reference!r} to code in {self.source}, once that "
                                   "code is installed here and trusted")

    def check_export(self, spec: JobSpec, task: str) -> None:
        """An output of `task` may leave the node only if every dataset it derives from allows it."""
        for dataset in sorted(lineage(spec, self.node)[task]):
            if not self._rule(dataset).outputs_may_leave:
                raise PolicyDenied(self.node, f"datasets.{dataset}.outputs_may_leave",
                                   f"outputs of task {task!r} derive from dataset {dataset!r}, whose results "
                                   f"may not leave the node", f"set datasets.{dataset}.outputs_may_leave: true "
                                   f"in {self.source}")

    def _rule(self, dataset: str) -> DatasetRule:
        rule = self.policy.datasets.get(dataset)
        if rule is None:
            raise PolicyDenied(self.node, f"datasets.{dataset}",
                               f"dataset {dataset!r} has no entry in the policy, so it is not shared",
                               f"add a datasets.{dataset} entry (peers, components) to {self.source}")
        return rule
