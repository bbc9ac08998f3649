"""What a component takes, as plain data: its parameters with type, default, range and description, read
from its pydantic model, so that `sharedml components NAME`, its `--json` and any form built from it say
exactly what the job validation enforces.
"""

from __future__ import annotations

import enum
import types
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python

from .component import Component

_BOUNDS = ((annotated_types.Ge, "ge", ">="), (annotated_types.Gt, "gt", ">"), (annotated_types.Le, "le", "<="),
           (annotated_types.Lt, "lt", "<"), (annotated_types.MinLen, "min_length", "min length"),
           (annotated_types.MaxLen, "max_length", "max length"))


def summary(component: Component) -> str:
    """The first sentence of the component's description."""
    text = " ".join(component.description.split())
    return text.split(". ")[0].rstrip(".")


def type_name(annotation: Any) -> str:
    """A short, readable name for a parameter's type: `int`, `ou | paillier`, `list[str]`, `MLPSpec | None`."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is not None and getattr(origin, "__name__", "") == "Annotated":
        return type_name(args[0])
    if origin in (list, tuple, set, dict):
        return f"{origin.__name__}[{', '.join(type_name(a) for a in args)}]"
    if annotation is type(None):
        return "None"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " | ".join(str(m.value) for m in annotation)
    return getattr(annotation, "__name__", str(annotation))


def _bounds(field: FieldInfo) -> str:
    found = []
    for item in field.metadata:
        for kind, attribute, sign in _BOUNDS:
            if isinstance(item, kind):
                found.append(f"{sign} {getattr(item, attribute)}")
    return ", ".join(found)


def _default(field: FieldInfo) -> Any:
    """The default as JSON-able data (nested models as their fields)."""
    if field.default_factory is not None:
        return to_jsonable_python(field.default_factory())
    if field.default is PydanticUndefined:
        return "(required)"
    return to_jsonable_python(field.default)


def parameters(component: Component) -> list[dict[str, Any]]:
    """Every parameter: name, type, default, range (bounds pydantic enforces) and description."""
    return [{"name": name, "type": type_name(field.annotation), "default": _default(field), "range": _bounds(field),
             "description": " ".join((field.description or "").split())}
            for name, field in component.params.model_fields.items()]


def describe(component: Component) -> dict[str, Any]:
    """The component as plain data (what `sharedml components NAME --json` prints)."""
    return {"name": component.name, "summary": summary(component), "description": component.description,
            "roles": list(component.roles) if component.roles else None, "min_parties": component.min_parties,
            "inputs": list(component.inputs), "optional_inputs": list(component.optional_inputs),
            "outputs": list(component.outputs), "parameters": parameters(component)}
