"""Point YAML validation errors at the file, line and field path that caused them.

Job specs, dataset catalogs, policies and every service's config file are hand-written YAML. A bare
pydantic error ("tasks.bins.params: Extra inputs are not permitted") makes the author hunt for the spot;
this module keeps the line of every mapping key and sequence item so each error can say
``job.yaml, line 7, tasks.bins.params: ...``. `load_config` is how deploy, serving and the TEE route
read their config files, so they all report problems the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..did_you_mean import suggestion

Loc = Sequence[str | int]

_MAX_INPUT_REPR = 60
# Job specs, catalogs, policies and configs are hand-written and a few KB; parsing YAML costs ~2.6 s per MB
# even with libyaml, and a job spec arrives from another member, so anything larger is refused unread.
MAX_YAML_BYTES = 256 << 10
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML was built with it: ~2x faster


class ConfigError(ValueError):
    """A config file that cannot be loaded; the message names the file, the line and the field."""


class ConfigFile(BaseModel):
    """A config file's model whose relative paths mean relative to the file, wherever the service starts:
    `load_config` sets `base_dir` to the file's folder and `path` resolves against it."""

    model_config = ConfigDict(extra="forbid")
    base_dir: Path = Field(Path("."), exclude=True)

    def path(self, value: str) -> Path:
        return (self.base_dir / Path(value).expanduser()).resolve()


M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class YamlDocument:
    """Parsed YAML data plus the 1-based line of each field path (path parts stored as strings)."""

    data: Any
    source: str
    lines: dict[tuple[str, ...], int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int | None:
        """Line of ``loc`` or of its closest enclosing field that the YAML spelled out."""
        path = tuple(str(part) for part in loc)
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]

    def locate(self, loc: Loc, message: str) -> str:
        """Format one problem as ``source, line N, a.b.c: message`` (parts left out when unknown)."""
        where = [self.source]
        line = self.line_of(loc)
        if line is not None:
            where.append(f"line {line}")
        if loc:
            where.append(".".join(str(part) for part in loc))
        return f"{', '.join(where)}: {message}"

    def explain(self, exc: ValidationError, model: type[BaseModel]) -> str:
        """Every error of ``exc`` (from validating ``model``) located, one per line, in file order."""
        errors = sorted(exc.errors(include_url=False), key=lambda error: self.line_of(error["loc"]) or 0)
        return "\n".join(self.locate(error["loc"], _describe(error, model)) for error in errors)


def load_config(path: str | Path, model: type[M], error: type[Exception] = ConfigError,
                not_a_mapping: str = "expected a mapping of fields") -> M:
    """Read the YAML file at `path` and validate it as `model`; every problem raises `error` naming the
    file, the line and the field (`not_a_mapping` says what the file should be when it is not a mapping).
    A `ConfigFile` model gets the file's folder as its `base_dir`."""
    document = read_yaml(path, error)
    if not isinstance(document.data, dict):
        raise error(f"{path}: {not_a_mapping}, got {type(document.data).__name__}")
    data = document.data
    if issubclass(model, ConfigFile):
        data = {**data, "base_dir": Path(path).resolve().parent}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(document.explain(exc, model)) from None


def read_yaml(path: str | Path, error: type[Exception]) -> YamlDocument:
    """Read and parse a YAML file, raising ``error`` that names the file for any I/O or syntax problem."""
    try:
        size = Path(path).stat().st_size
        if size > MAX_YAML_BYTES:
            raise error(f"{path}: {size} bytes; a YAML file here may have at most {MAX_YAML_BYTES}")
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read file: {exc}") from exc
    return parse_yaml(text, str(path), error)


def parse_yaml(text: str, source: str, error: type[Exception]) -> YamlDocument:
    """Parse YAML once with the safe loader only; syntax errors become ``error`` naming source and line."""
    if len(text) > MAX_YAML_BYTES:
        raise error(f"{source}: {len(text)} characters of YAML; at most {MAX_YAML_BYTES} are accepted")
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}, line {mark.line + 1}" if mark is not None else source
        detail = f"{exc.problem} ({exc.context})" if exc.context else str(exc.problem)
        raise error(f"{where}: invalid YAML: {detail}") from exc
    except yaml.YAMLError as exc:
        raise error(f"{source}: invalid YAML: {exc}") from exc
    finally:
        loader.dispose()
    lines: dict[tuple[str, ...], int] = {}
    if root is not None:
        _record_lines(root, (), lines, set())
    return YamlDocument(data=data, source=source, lines=lines)


def _record_lines(
    node: yaml.Node, path: tuple[str, ...], lines: dict[tuple[str, ...], int], seen: set[int]
) -> None:
    """Map every path under ``node`` to its line; aliased nodes are walked once (no alias bombs or loops)."""
    lines.setdefault(path, node.start_mark.line + 1)
    if id(node) in seen:
        return
    seen.add(id(node))
    children: Iterable[tuple[str, yaml.Node, yaml.Node]] = ()
    if isinstance(node, yaml.MappingNode):
        children = (
            (str(key.value), key, value) for key, value in node.value if isinstance(key, yaml.ScalarNode)
        )
    elif isinstance(node, yaml.SequenceNode):
        children = ((str(index), item, item) for index, item in enumerate(node.value))
    for name, anchor, value in children:
        lines.setdefault((*path, name), anchor.start_mark.line + 1)
        _record_lines(value, (*path, name), lines, seen)


def _describe(error: Any, model: type[BaseModel]) -> str:
    """Pydantic's message, plus the allowed names for a typo'd key and the offending scalar input."""
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        allowed = _allowed_fields(model, error["loc"][:-1])
        if allowed:
            hint = suggestion(str(error["loc"][-1]), allowed) or ";"
            return f"{message}{hint} allowed fields: {', '.join(allowed)}"
        return message
    value = error.get("input")
    if isinstance(value, str | int | float | bool):
        shown = repr(value)
        if len(shown) <= _MAX_INPUT_REPR:
            return f"{message} (got {shown})"
    return message


def _allowed_fields(model: type[BaseModel], loc: Loc) -> list[str]:
    """Field names of the model found at ``loc`` below ``model`` (through model fields and dict values)."""
    current: Any = model
    for part in loc:
        if get_origin(current) is Annotated:
            current = get_args(current)[0]
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(str(part))
            if info is None:
                return []
            current = info.annotation
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []
