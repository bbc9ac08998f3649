"""A node's data-use policy: per dataset, which peers and components may use it, and whether results
derived from it may leave the node.

The node checks its policy itself, on approval and again on every task it is asked to run, so a
coordinator cannot skip it. "Use" follows lineage: a task uses a dataset when it reads it or any
earlier output of this party derived from it, and everyone else in the job counts as a peer, since
derived values can travel on through later tasks. Anything not listed is denied.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from .spec import DatasetRef, JobSpec, parse_ref
from .yaml_errors import read_yaml

ANY = "*"
Name = Annotated[str, StringConstraints(min_length=1)]


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
    outputs_may_leave: bool = Field(False, description="may models/predictions derived from it be exported")


class Policy(BaseModel):
    """A node's policy file: ``datasets: {name: rule}``; unlisted datasets are not shared at all."""

    model_config = ConfigDict(extra="forbid", strict=True)

    datasets: dict[Name, DatasetRule] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        document = read_yaml(path, PolicyError)
        try:
            return cls.model_validate(document.data or {})
        except ValidationError as exc:
            raise PolicyError(document.explain(exc, cls)) from exc


def lineage(spec: JobSpec, party: str) -> dict[str, set[str]]:
    """For each task `party` runs, the catalog datasets whose values (or derivatives) it processes."""
    used: dict[str, set[str]] = {}
    for task in spec.tasks_for(party):
        direct = {spec.parties[party].data[ref.alias] for text in spec.tasks[task].inputs.values()
                  if isinstance(ref := parse_ref(text), DatasetRef) and ref.alias in spec.parties[party].data}
        inherited = set().union(*(used.get(upstream, set()) for upstream in spec.upstream(task)))
        used[task] = direct | inherited
    return used


class PolicyChecker:
    """Applies one node's policy to jobs."""

    def __init__(self, node: str, policy: Policy, source: str) -> None:
        self.node, self.policy, self.source = node, policy, source

    def check_task(self, spec: JobSpec, task: str) -> set[str]:
        """The datasets `task` uses at this node, or PolicyDenied for the first rule it breaks."""
        datasets = lineage(spec, self.node)[task]
        peers = [p for p in spec.parties if p != self.node]
        component = spec.tasks[task].component
        for dataset in sorted(datasets):
            rule = self._rule(dataset)
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

    def check_job(self, spec: JobSpec) -> dict[str, set[str]]:
        """Every task this node would run, checked up front: {task: datasets used}."""
        return {task: self.check_task(spec, task) for task in spec.tasks_for(self.node)}

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
