"""The built-in components, and the checks that tie a job spec to them before anything runs."""

from __future__ import annotations

import importlib
import os

from pydantic import ValidationError

from ..runtime.component import Component, get_component
from .spec import JobSpec, JobSpecError

BUILTIN_MODULES = ("sharedml.fl.secure_sum", "sharedml.fl.stats")
PLUGINS_ENV = "SHAREDML_COMPONENT_MODULES"


def load_builtin_components() -> None:
    """Import the modules whose `@component` decorators register components: the built-in ones,
    then any listed (comma-separated) in $SHAREDML_COMPONENT_MODULES, for a site's own components."""
    extra = [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
    for module in (*BUILTIN_MODULES, *extra):
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ImportError(f"cannot import component module {module!r} (from ${PLUGINS_ENV}): {err}") from err


def check_components(spec: JobSpec) -> dict[str, Component]:
    """Every task names a known component, its params validate, its roles and inputs fit."""
    load_builtin_components()
    problems: list[str] = []
    found: dict[str, Component] = {}
    for name, task in spec.tasks.items():
        try:
            comp = get_component(task.component)
        except KeyError as err:
            problems.append(f"tasks.{name}.component: {err.args[0]}")
            continue
        found[name] = comp
        try:
            comp.params.model_validate(task.params)
        except ValidationError as err:
            for e in err.errors():
                where = ".".join(str(p) for p in e["loc"])
                problems.append(f"tasks.{name}.params{'.' + where if where else ''}: {e['msg']}")
        parties = spec.parties_for(name)
        if len(parties) < comp.min_parties:
            problems.append(f"tasks.{name}: component {comp.name!r} needs at least {comp.min_parties} parties, "
                            f"the task has {len(parties)}")
        if comp.roles is not None:
            for party in parties:
                if spec.parties[party].role not in comp.roles:
                    problems.append(f"parties.{party}.role: {spec.parties[party].role!r} cannot run "
                                    f"{comp.name!r} (task {name}); allowed roles: {', '.join(comp.roles)}")
        unknown = sorted(set(task.inputs) - set(comp.inputs))
        missing = sorted(set(comp.inputs) - set(task.inputs))
        if unknown:
            problems.append(f"tasks.{name}.inputs: {comp.name!r} takes no input {unknown}; "
                            f"its inputs are: {', '.join(comp.inputs) or 'none'}")
        if missing:
            problems.append(f"tasks.{name}.inputs: {comp.name!r} needs input(s) {missing}")
        for ref_task, output in _output_refs(spec, name):
            upstream = get_component(spec.tasks[ref_task].component) if ref_task in spec.tasks else None
            if upstream is not None and output not in upstream.outputs:
                problems.append(f"tasks.{name}.inputs: task {ref_task!r} ({upstream.name}) has no output "
                                f"{output!r}; its outputs are: {', '.join(upstream.outputs)}")
    if problems:
        raise JobSpecError("job " + spec.job + ":\n  " + "\n  ".join(problems))
    return found


def _output_refs(spec: JobSpec, task: str) -> list[tuple[str, str]]:
    from .spec import OutputRef, parse_ref

    refs = [parse_ref(text) for text in spec.tasks[task].inputs.values()]
    return [(r.task, r.output) for r in refs if isinstance(r, OutputRef)]
