"""The job forms of the board: common pipelines whose parameters are a form, generated from each component's
parameter schema (`runtime.component_docs`: type, default, range, description), so a field's limits are
the ones the job validation enforces.

A pipeline is a job spec with its parties and datasets left open. The form fills them and the parameters a
person changed (a field left at its default is left out of the spec); anything else is a job for the YAML
editor, which starts from the same spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from ..jobs.components import load_builtin_components
from ..runtime.component import get_component
from ..runtime.component_docs import parameters

MAX_FIELD_CHARS = 2000


@dataclass(frozen=True)
class Pipeline:
    name: str
    title: str
    roles: tuple[str, ...]  # one party each; every role brings one dataset, under the alias `data`
    tasks: dict[str, dict[str, Any]]  # task -> its spec, with `parties` as role names where limited

    def fields(self) -> list[dict[str, Any]]:
        """Per task: its component and every parameter as a form field (name `param.<task>.<parameter>`)."""
        load_builtin_components()
        out = []
        for task, doc in self.tasks.items():
            described = parameters(get_component(doc["component"]))
            for p in described:
                p["field"] = f"param.{task}.{p['name']}"
                p["value"] = _text(doc.get("params", {}).get(p["name"], p["default"]))
                p["choices"] = ["true", "false"] if p["type"] == "bool" else \
                    p["type"].split(" | ") if _is_choice(p["type"]) else None
            out.append({"task": task, "component": doc["component"], "parameters": described})
        return out

    def document(self, job: str, parties: dict[str, tuple[str, str]], form: dict[str, str]) -> dict[str, Any]:
        """The job spec for `parties` ({role: (party, dataset)}) and the parameter fields of `form` that differ
        from their defaults (values read as YAML scalars or lists: `3`, `0.3`, `true`, `[a, b]`)."""
        defaults = {f["field"]: f["value"] for task in self.fields() for f in task["parameters"]}
        tasks: dict[str, Any] = {}
        for task, doc in self.tasks.items():
            spec = {k: v for k, v in doc.items() if k != "parties"}
            params = dict(doc.get("params", {}))
            for field, default in defaults.items():
                _, owner, name = field.split(".", 2)
                value = form.get(field, default).strip()[:MAX_FIELD_CHARS]
                if owner == task and value != default and value != "":
                    params[name] = _read(value, field)
            if params:
                spec["params"] = params
            if "parties" in doc:
                spec["parties"] = [parties[role][0] for role in doc["parties"]]
            tasks[task] = spec
        return {"job": job, "parties": {party: {"role": role, "data": {"data": dataset}}
                                        for role, (party, dataset) in parties.items()},
                "tasks": tasks}


class FieldError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def _is_choice(type_name: str) -> bool:
    return " | " in type_name and all(part.replace("_", "").isalnum() and not part[0].isupper()
                                      and part not in ("int", "float", "str", "bool", "None")
                                      for part in type_name.split(" | "))


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def _read(value: str, field: str) -> Any:
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise FieldError(field, f"not a value: {str(err).splitlines()[0]}") from None


PIPELINES = {p.name: p for p in (
    Pipeline("vertical-secureboost", "Vertical SecureBoost: PSI → SecureBoost → predict → evaluate",
             ("guest", "host"),
             {"align": {"component": "psi", "inputs": {"data": "$data"}},
              "boost": {"component": "hetero_secureboost", "inputs": {"train": "align.data"}},
              "score": {"component": "hetero_secureboost_predict",
                        "inputs": {"model": "boost.model", "data": "align.data"}},
              "report": {"component": "evaluate", "inputs": {"predictions": "score.predictions"},
                         "parties": ["guest"]}}),
    Pipeline("vertical-lr", "Vertical logistic regression: PSI → hetero LR → predict → evaluate",
             ("guest", "host"),
             {"align": {"component": "psi", "inputs": {"data": "$data"}},
              "train": {"component": "hetero_lr", "inputs": {"train": "align.data"}},
              "score": {"component": "hetero_lr_predict", "inputs": {"model": "train.model", "data": "align.data"}},
              "report": {"component": "evaluate", "inputs": {"predictions": "score.predictions"},
                         "parties": ["guest"]}}),
)}
