"""sklearn-style models over the job components: `fit`, `predict_proba`, `predict`, `evaluate`, `save`.

Each estimator is a component name and its parameters, nothing more: `fit` builds the job a YAML author
would write (a `psi` to align vertical rows, then the training component) and runs it with the
federation; the parameters are checked by the component's own pydantic model, so they mean exactly what
they mean in a job file (`sharedml components NAME` lists them). `job_` is the last job run, a `JobSpec`
(`job_.to_yaml()` prints it).

The model stays split as the protocol leaves it: `model_parts_` maps each party to the file of its own
part, in that party's run folder; scoring names each part in its owner's catalog (`format: model`), so a
prediction job is again an ordinary job. `save` copies the parts into one folder per party.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
from pydantic import ValidationError

from ..did_you_mean import suggestion
from ..jobs.components import load_builtin_components
from ..jobs.spec import JobSpec
from ..private_files import make_private_dirs, write_bytes_atomic
from ..runtime.component import Component, get_component
from .federation import FederatedData, Federation

MANIFEST = "sharedml-model.json"
SCORE_COLUMN_PREFIX = "score"


class FederatedModel:
    """A model trained by a job component; subclasses name the component and its predict component."""

    component: ClassVar[str]
    predict_component: ClassVar[str]
    kind: ClassVar[str]  # vertical | horizontal
    contract_params: ClassVar[tuple[str, ...]] = ("label", "id_columns")  # come from the data, not from here

    def __init__(self, **params: Any) -> None:
        self.params = params
        self._check(params)
        self.job_: JobSpec | None = None
        self.model_parts_: dict[str, Path] = {}
        self.roles_: dict[str, str] = {}
        self.federation_: Federation | None = None
        self.importance_: dict[str, pd.DataFrame] = {}  # party -> its own features' importance (where the model has it)
        self.report_: dict[str, Any] | None = None  # the last `evaluate`'s report

    def get_params(self) -> dict[str, Any]:
        return dict(self.params)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params.items())})"

    @classmethod
    def _spec(cls) -> Component:
        load_builtin_components()
        return get_component(cls.component)

    def _check(self, params: dict[str, Any]) -> None:
        """The component's own validation, with a suggestion for a misspelt name."""
        fields = self._spec().params.model_fields
        for name in params:
            if name not in fields:
                raise TypeError(f"{type(self).__name__} has no parameter {name!r}{suggestion(name, fields)} "
                                f"(`sharedml components {self.component}` lists them)")
            if name in self.contract_params:
                raise TypeError(f"{name!r} comes from the data: give it to federation.vertical/horizontal")
        try:
            self._spec().params.model_validate(params)
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            raise ValueError(f"{type(self).__name__}: {problems}") from None

    # -- training ---------------------------------------------------------------------------------
    def fit(self, train: FederatedData, validate: FederatedData | None = None) -> FederatedModel:
        """Train on `train` (and score `validate` each round/epoch where the component supports it)."""
        self._require_kind(train, "fit")
        federation = train.federation
        roles = self._roles(train)
        inputs = {"train": self._input(train, "train")}
        entries: dict[str, dict[str, Any]] = {p: {"train": e} for p, e in train.entries.items()}
        tasks: dict[str, Any] = self._aligned(train, "train")
        if validate is not None:
            self._require_kind(validate, "fit (validate)")
            if "validate" not in self._spec().optional_inputs:
                raise TypeError(f"{self.component} takes no validation data")
            inputs["validate"] = self._input(validate, "validate")
            tasks.update(self._aligned(validate, "validate"))
            for party, entry in validate.entries.items():
                entries.setdefault(party, {})["validate"] = entry
        tasks["fit"] = {"component": self.component, "inputs": inputs, "params": self.params}
        spec = self._job("fit", roles, entries, tasks, federation)
        result = federation.run(spec, entries)
        self.job_, self.roles_, self.federation_ = spec, roles, federation
        fitted = {party: r.outputs.get("fit", {}) for party, r in result.parties.items()}
        self.model_parts_ = {party: Path(out["model"]) for party, out in fitted.items() if "model" in out}
        self.importance_ = {party: result.output(party, "fit", "importance") for party, out in fitted.items()
                            if "importance" in out}
        return self

    # -- scoring ----------------------------------------------------------------------------------
    def predict_proba(self, data: FederatedData) -> pd.DataFrame | dict[str, pd.DataFrame]:
        """The ID columns and `score` (the positive class's probability; `score_k` per class for several) of
        every row, at the label holder (vertical), or at each party that brought rows (horizontal: one table,
        or {party: table} for several)."""
        return self._score(data, lambda t: [c for c in t.columns if c.startswith(SCORE_COLUMN_PREFIX)])

    def predict(self, data: FederatedData) -> pd.DataFrame | dict[str, pd.DataFrame]:
        """The ID columns and `predicted` (class or value) of every row; where, as for `predict_proba`."""
        return self._score(data, lambda t: ["predicted"])

    def evaluate(self, data: FederatedData) -> dict[str, Any]:
        """The `evaluate` component's report (auc, ks, accuracy, ..., curves) on `data`, which must carry
        the label; for horizontal data at several parties, {party: report}."""
        result, spec = self._run_scoring(data, evaluate=True)
        reports = {p: result.output(p, "report", "report") for p in spec.tasks["report"].parties or []}
        self.report_ = _one_or_all(reports)
        return self.report_

    def _score(self, data: FederatedData, columns: Any) -> pd.DataFrame | dict[str, pd.DataFrame]:
        result, spec = self._run_scoring(data, evaluate=False)
        tables = {}
        for party in self._scoring_parties(data):
            table = result.output(party, "predict", "predictions")
            keep = [c for c in data.id_columns if c in table.columns] + columns(table)
            tables[party] = table[keep].reset_index(drop=True)
        return _one_or_all(tables)

    def _run_scoring(self, data: FederatedData, evaluate: bool) -> tuple[Any, JobSpec]:
        self._require_kind(data, "scoring")
        if not self.model_parts_:
            raise RuntimeError(f"this {type(self).__name__} is not fitted: call fit first (or sharedml.load)")
        missing = [p for p in self._scoring_parties(data) if p not in self.model_parts_]
        if missing:
            raise ValueError(f"party(ies) {missing} hold no part of this model (it was trained by "
                             f"{', '.join(self.model_parts_)})")
        entries: dict[str, dict[str, Any]] = {p: {"data": e} for p, e in data.entries.items()}
        for party, path in self.model_parts_.items():
            if party in self._scoring_parties(data) or self.kind == "vertical":
                entries.setdefault(party, {})["model"] = {"path": str(path)}
        roles = {p: r for p, r in self.roles_.items() if p in entries}
        tasks = self._aligned(data, "data")
        tasks["predict"] = {"component": self.predict_component,
                            "inputs": {"model": "$model", "data": self._input(data, "data")}}
        if evaluate:
            holders = [p for p in data.parties if "label" in data.entries[p]]
            if not holders:
                raise ValueError("evaluate needs the label: give `label` to federation.vertical/horizontal")
            tasks["report"] = {"component": "evaluate", "inputs": {"predictions": "predict.predictions"},
                               "parties": holders}
        federation = data.federation
        spec = self._job("score", roles, entries, tasks, federation)
        return federation.run(spec, entries), spec

    def _scoring_parties(self, data: FederatedData) -> list[str]:
        if self.kind == "horizontal":
            return data.parties
        return [p for p, r in self.roles_.items() if r == "guest"]

    # -- pictures (matplotlib, the `viz` extra) ----------------------------------------------------
    def plot(self, kind: str = "roc") -> Any:
        """A figure of the last `evaluate` report: roc, precision_recall, ks, lift_gain or confusion."""
        from ..viz import figures

        if self.report_ is None or "task_type" not in self.report_:
            raise RuntimeError("call evaluate(data) first (for data at several parties, plot each report with "
                               "sharedml.viz.figures)")
        if kind not in figures.REPORT_FIGURES:
            raise ValueError(f"unknown plot {kind!r}; choose one of {', '.join(figures.REPORT_FIGURES)}")
        return figures.REPORT_FIGURES[kind](self.report_)

    def plot_roc(self) -> Any:
        return self.plot("roc")

    def plot_importance(self, party: str | None = None) -> Any:
        """`party`'s own features by importance (default: the only or first party with a table)."""
        from ..viz import figures

        if not self.importance_:
            raise RuntimeError(f"{type(self).__name__} keeps no feature importance (fit first; SecureBoost has it)")
        return figures.importance(self.importance_[party or next(iter(self.importance_))])

    # -- persistence ------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Each party's model part into `folder/<party>/model.msgpack` (private files) and a manifest; in a
        deployment each party would keep only its own folder."""
        if not self.model_parts_:
            raise RuntimeError("nothing to save: fit first")
        folder = make_private_dirs(Path(folder).resolve())
        for party, path in self.model_parts_.items():
            write_bytes_atomic(make_private_dirs(folder / party) / "model.msgpack", path.read_bytes())
        manifest = {"estimator": type(self).__name__, "params": self.params, "roles": self.roles_,
                    "parties": sorted(self.model_parts_)}
        write_bytes_atomic(folder / MANIFEST, json.dumps(manifest, indent=2).encode())
        return folder

    # -- job building -----------------------------------------------------------------------------
    def _require_kind(self, data: FederatedData, what: str) -> None:
        if data.kind != self.kind:
            other = "federation.vertical" if self.kind == "vertical" else "federation.horizontal"
            raise TypeError(f"{type(self).__name__} is a {self.kind} model but got {data.kind} data for {what}: "
                            f"build it with {other}(...)")

    def _roles(self, data: FederatedData) -> dict[str, str]:
        """The job's parties: the data's (vertical: their federation roles; horizontal: clients) and the
        federation's parties without data that this component takes (an aggregator, an arbiter, a dealer)."""
        federation, allowed = data.federation, self._spec().roles or ()
        roles = {p: ("client" if self.kind == "horizontal" else federation.roles[p]) for p in data.parties}
        roles.update({p: r for p, r in federation.roles.items() if p not in roles and r in allowed
                      and r not in ("guest", "host", "client")})
        if self.kind == "horizontal" and "aggregator" not in roles.values():
            raise ValueError("horizontal training needs a party with role 'aggregator' in the federation "
                             "(it holds no data and combines the clients' updates)")
        return roles

    def _aligned(self, data: FederatedData, alias: str) -> dict[str, Any]:
        """Vertical data is aligned by PSI on its ID columns first; horizontal rows are used as they are."""
        if self.kind != "vertical":
            return {}
        return {f"align_{alias}": {"component": "psi", "inputs": {"data": f"${alias}"}, "parties": data.parties}}

    def _input(self, data: FederatedData, alias: str) -> str:
        return f"align_{alias}.data" if self.kind == "vertical" else f"${alias}"

    def _job(self, name: str, roles: dict[str, str], entries: dict[str, dict[str, Any]], tasks: dict[str, Any],
             federation: Federation) -> JobSpec:
        parties = {p: {"role": r, "data": {alias: alias for alias in entries.get(p, {})}} for p, r in roles.items()}
        return JobSpec.model_validate({"job": f"{self.component}-{name}", "parties": parties, "tasks": tasks,
                                       "timeout": federation.timeout})


def _one_or_all(by_party: dict[str, Any]) -> Any:
    return next(iter(by_party.values())) if len(by_party) == 1 else by_party


# -- the models ---------------------------------------------------------------------------------------
class SecureBoostClassifier(FederatedModel):
    """Vertical gradient-boosted trees (SecureBoost, equal to xgboost on the same bins): `hetero_secureboost`."""

    component, predict_component, kind = "hetero_secureboost", "hetero_secureboost_predict", "vertical"


class SecureBoostRegressor(SecureBoostClassifier):
    """SecureBoost with squared error (`objective: regression`)."""

    def __init__(self, **params: Any) -> None:
        super().__init__(**{"objective": "regression", **params})


class HeteroLogisticRegression(FederatedModel):
    """Vertical logistic regression, gradients under homomorphic encryption: `hetero_lr`."""

    component, predict_component, kind = "hetero_lr", "hetero_lr_predict", "vertical"


class HeteroLinearRegression(FederatedModel):
    """Vertical linear regression, gradients under homomorphic encryption: `hetero_linr`."""

    component, predict_component, kind = "hetero_linr", "hetero_lr_predict", "vertical"


class SSLogisticRegression(FederatedModel):
    """Vertical logistic regression trained on secret shares: `ss_lr`."""

    component, predict_component, kind = "ss_lr", "ss_lr_predict", "vertical"


class HomoLogisticRegression(FederatedModel):
    """Horizontal (federated) logistic regression with secure aggregation: `homo_lr`."""

    component, predict_component, kind = "homo_lr", "homo_lr_predict", "horizontal"


class HomoSecureBoostClassifier(FederatedModel):
    """Horizontal gradient-boosted trees from securely summed histograms: `homo_secureboost`."""

    component, predict_component, kind = "homo_secureboost", "homo_secureboost_predict", "horizontal"


class HomoNNClassifier(FederatedModel):
    """A horizontal (federated) PyTorch network: `homo_nn`."""

    component, predict_component, kind = "homo_nn", "homo_nn_predict", "horizontal"


ESTIMATORS = {cls.__name__: cls for cls in (SecureBoostClassifier, SecureBoostRegressor, HeteroLogisticRegression,
                                            HeteroLinearRegression, SSLogisticRegression, HomoLogisticRegression,
                                            HomoSecureBoostClassifier, HomoNNClassifier)}


def load(folder: str | Path, federation: Federation | None = None) -> FederatedModel:
    """A model saved by `save`, ready to score with `federation` (default: a local one with the saved roles)."""
    folder = Path(folder).resolve()
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        cls = ESTIMATORS[manifest["estimator"]]
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"{folder} holds no saved sharedml model ({MANIFEST}): {err}") from None
    model = cls(**manifest["params"])
    model.roles_ = dict(manifest["roles"])
    model.model_parts_ = {party: folder / party / "model.msgpack" for party in manifest["parties"]}
    model.federation_ = federation or Federation.local(model.roles_)
    return model
