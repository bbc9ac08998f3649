"""The component registry: named, role-aware functions that every party of a job runs.

A component is a plain function `f(ctx, params, **inputs) -> dict[output name, value]`. Every
party runs the same function with its own `Context`; what crosses between parties is an explicit
`ctx.send` / `ctx.recv`. Parameters are a pydantic model, so a job is validated before it starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict


def _as_list(value: object) -> object:
    return [value] if isinstance(value, str) else value


# A parameter naming columns: a list, or one name written as a plain string (`id_columns: id`).
ColumnList = Annotated[list[str], BeforeValidator(_as_list)]


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
        raise KeyError(f"unknown component {name!r}; available: {', '.join(sorted(_REGISTRY))}") from None


def registered() -> dict[str, Component]:
    return dict(sorted(_REGISTRY.items()))
