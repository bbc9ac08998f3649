"""The built-in components, and the checks that tie a job spec to them before anything runs."""

from __future__ import annotations

import functools
import importlib
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..did_you_mean import suggestion
from ..runtime.component import Component, get_component
from .spec import JobSpec, JobSpecError, OutputRef, parse_ref, validate_document
from .yaml_errors import YamlDocument, read_yaml

PLUGINS_ENV = "SHAREDML_COMPONENT_MODULES"
PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # the installed `sharedml` package


@functools.cache
def builtin_modules() -> tuple[str, ...]:
    """Every `components.py` under the package (this module excepted): each package registers its own
    components there, so a new one needs no list kept here."""
    here = Path(__file__).resolve()
    found = (p for p in PACKAGE_ROOT.rglob("components.py") if p.resolve() != here)
    return tuple(sorted("sharedml." + ".".join(p.relative_to(PACKAGE_ROOT).with_suffix("").parts) for p in found))


def load_builtin_components() -> None:
    """Import the modules whose `@component` decorators register components: the built-in ones,
    then any listed (comma-separated) in $SHAREDML_COMPONENT_MODULES, for a site's own components."""
    extra = [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
    for module in (*builtin_modules(), *extra):
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ImportError(f"cannot import component module {module!r} (from ${PLUGINS_ENV}): {err}") from err


def _param_problem(comp: Component, error: dict[str, Any]) -> str:
    """pydantic's message, or for a misspelt parameter one that names the closest real one."""
    if error["type"] != "extra_forbidden" or len(error["loc"]) != 1:
        return error["msg"]
    name = str(error["loc"][0])
    return (f"{comp.name} has no parameter {name!r}{suggestion(name, comp.params.model_fields)} "
            f"(`sharedml components {comp.name}` lists them)")


def load_checked_job(path: str | Path) -> JobSpec:
    """Load a job file and check it against the components; every problem names file, line, field."""
    document = read_yaml(path, JobSpecError)
    spec = validate_document(document)
    check_components(spec, document)
    return spec


def check_components(spec: JobSpec, document: YamlDocument | None = None) -> dict[str, Component]:
    """Every task names a known component, its params validate, its roles and inputs fit."""
    load_builtin_components()
    problems: list[tuple[tuple[str, ...], str]] = []
    found: dict[str, Component] = {}
    for name, task in spec.tasks.items():
        try:
            comp = get_component(task.component)
        except KeyError as err:
            problems.append((("tasks", name, "component"), err.args[0]))
            continue
        found[name] = comp
        try:
            comp.params.model_validate(task.params)
        except ValidationError as err:
            for e in err.errors():
                problems.append((("tasks", name, "params", *map(str, e["loc"])), _param_problem(comp, e)))
        parties = spec.parties_for(name)
        if len(parties) < comp.min_parties:
            problems.append((("tasks", name), f"component {comp.name!r} needs at least {comp.min_parties} "
                                               f"parties, the task has {len(parties)}"))
        if comp.roles is not None:
            for party in parties:
                if spec.parties[party].role not in comp.roles:
                    problems.append((("parties", party, "role"), f"{spec.parties[party].role!r} cannot run "
                                     f"{comp.name!r} (task {name}); allowed roles: {', '.join(comp.roles)}"))
        accepted = comp.inputs + comp.optional_inputs
        unknown = sorted(set(task.inputs) - set(accepted))
        missing = sorted(set(comp.inputs) - set(task.inputs))
        if unknown:
            problems.append((("tasks", name, "inputs", unknown[0]), f"{comp.name!r} takes no input {unknown}; "
                             f"its inputs are: {', '.join(accepted) or 'none'}"))
        if missing:
            problems.append((("tasks", name, "inputs"), f"{comp.name!r} needs input(s) {missing}"))
        for input_name, text in task.inputs.items():
            ref = parse_ref(text)
            if not isinstance(ref, OutputRef) or ref.task not in spec.tasks:
                continue
            upstream = _known(spec.tasks[ref.task].component)
            if upstream is not None and ref.output not in upstream.outputs:
                problems.append((("tasks", name, "inputs", input_name),
                                 f"task {ref.task!r} ({upstream.name}) has no output {ref.output!r}; "
                                 f"its outputs are: {', '.join(upstream.outputs)}"))
    if problems:
        located = [document.locate(loc, msg) if document else f"{'.'.join(loc)}: {msg}" for loc, msg in problems]
        raise JobSpecError("\n".join(located))
    return found


def _known(name: str) -> Component | None:
    try:
        return get_component(name)
    except KeyError:
        return None
