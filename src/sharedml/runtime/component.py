"""The component registry: named, role-aware functions that every party of a job runs.

A component is a plain function `f(ctx, params, **inputs) -> dict[output name, value]`. Every
party runs the same function with its own `Context`; what crosses between parties is an explicit
`ctx.send` / `ctx.recv`. Parameters are a pydantic model, so a job is validated before it starts.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

from ..did_you_mean import suggestion


def _as_list(value: object) -> object:
    return [value] if isinstance(value, str) else value


# A parameter naming columns: a list, or one name written as a plain string (`id_columns: id`).
ColumnList = Annotated[list[str], BeforeValidator(_as_list)]


class CodeNotAllowed(PermissionError):
    """A job names code (a `package.module:function`) that this party has not allowed it to run."""


def _import_path(value: str) -> str:
    module, colon, name = value.partition(":")
    if not (colon and name.isidentifier() and all(part.isidentifier() for part in module.split("."))):
        raise ValueError(f"code reference {value!r} must look like 'package.module:function'")
    return value


_CODE_REFERENCE = object()  # marks a parameter whose value names code to import (see code_references)
# A parameter that names code a party would import and call. A job spec comes from someone else, so such a
# name is honoured only if the party's operator allowed it (a node's policy `code`, `sharedml run --allow-code`).
CodeRef = Annotated[str, AfterValidator(_import_path), _CODE_REFERENCE]


def code_references(params: BaseModel) -> set[str]:
    """Every CodeRef value in `params`, nested models and lists of them included."""
    found: set[str] = set()
    for name, field in type(params).model_fields.items():
        value = getattr(params, name)
        if _CODE_REFERENCE in field.metadata and isinstance(value, str):
            found.add(value)
        for item in value if isinstance(value, list | tuple) else [value]:
            if isinstance(item, BaseModel):
                found |= code_references(item)
    return found


def require_allowed(reference: str, allowed: Collection[str], party: str) -> None:
    """CodeNotAllowed unless `reference` is on `party`'s allow-list: nothing a job names is imported otherwise."""
    if reference not in allowed:
        raise CodeNotAllowed(
            f"party {party!r} does not allow code {reference!r}: a job may name only code its operator allowed; "
            f"to allow it, add {reference!r} to `code` in the node's policy file, or pass "
            f"`--allow-code {reference}` to `sharedml run`")


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Component:
    name: str
    func: Callable[..., dict[str, Any]]
    params: type[BaseModel]
    roles: tuple[str, ...] | None  # None: any role
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    min_parties: int
    description: str
    optional_inputs: tuple[str, ...] = ()  # may be left out of a task; the function then gets its default


_REGISTRY: dict[str, Component] = {}


def component(name: str, *, params: type[BaseModel] = NoParams, roles: tuple[str, ...] | None = None,
              inputs: tuple[str, ...] = (), outputs: tuple[str, ...] = (), min_parties: int = 1,
              optional_inputs: tuple[str, ...] = ()):
    """Register `func` as the component `name` (decorator)."""

    def register(func: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        if name in _REGISTRY and _REGISTRY[name].func is not func:
            raise ValueError(f"component {name!r} is registered twice")
        doc = (func.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = Component(name, func, params, roles, tuple(inputs), tuple(outputs), min_parties,
                                    doc[0] if doc else "", tuple(optional_inputs))
        return func

    return register


def get_component(name: str) -> Component:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown component {name!r}{suggestion(name, _REGISTRY)} (available: "
                       f"{', '.join(sorted(_REGISTRY))}; `sharedml components` describes them)") from None


def registered() -> dict[str, Component]:
    return dict(sorted(_REGISTRY.items()))
