"""A dataset's data contract: what its columns mean, declared once in the party's catalog, the place that
knows the data, and honoured by every task that reads the dataset or anything derived from it.

Without it every component guessed: IDs called `id`, the label `y`, non-numeric columns dropped. A user
whose IDs were called `customer_id` got them as model features, and a text column vanished without a
word. Now a catalog entry says it:

    patients: {path: p.csv, id_columns: [customer_id], label: diagnosis, categorical: [segment], exclude: [name]}

and reading the dataset for a task applies it: `exclude` columns are left out, `categorical` columns are
one-hot encoded (`segment=a`, `segment=b`, ...), a declared `positive_class` becomes label 1 and every
other class 0, `dtypes` are enforced. Tasks get `id_columns` and `label` as parameter defaults (their own
params still win). Every check here runs before the task sends a message, and its errors name the party,
the dataset, the file, the column and the fix, never a data value: an error is also sent to the peers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

Column = Annotated[str, StringConstraints(min_length=1)]


def _as_list(value: object) -> object:
    return [value] if isinstance(value, str) else value


Columns = Annotated[list[Column], BeforeValidator(_as_list)]
DType = Literal["float", "int", "str", "bool"]
# Parameters a contract fills in for a task whose own params leave them out.
CONTRACT_PARAMS = ("id_columns", "label")


class ContractError(ValueError):
    """A dataset that does not meet its contract, or a contract that cannot be applied."""


class DataContract(BaseModel):
    """The meaning of a dataset's columns (all optional; a catalog entry without them keeps the old defaults)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id_columns: Columns | None = Field(None, description="column(s) that identify a row: PSI keys, never features")
    label: Column | None = Field(None, description="the label column, at the party that holds labels")
    positive_class: str | int | None = Field(None, description="the label value that counts as 1 (others 0)")
    categorical: Columns | dict[Column, list[str | int]] = Field(
        default_factory=list, description="columns one-hot encoded; a mapping fixes each column's categories "
        "(needed when parties must agree on them, e.g. horizontal clients)")
    exclude: Columns = Field(default_factory=list, description="columns never used: left out when the data is read")
    dtypes: dict[Column, DType] = Field(default_factory=dict, description="column types to enforce on read")

    @property
    def declared(self) -> dict[str, Any]:
        """The task parameters this contract supplies: {name: value} for those it declares."""
        values = {"id_columns": self.id_columns, "label": self.label}
        return {name: value for name, value in values.items() if value is not None}


def declared_columns(contract: DataContract) -> list[str]:
    """Columns the contract names, which the data must have."""
    return [*(contract.id_columns or []), *([contract.label] if contract.label else []), *contract.categorical,
            *contract.dtypes]


def prepare(table: pd.DataFrame, contract: DataContract, where: str) -> pd.DataFrame:
    """`table` as the contract describes it: declared columns present, types enforced, excluded columns out,
    categories one-hot encoded, a positive class mapped to 1. `where` names party, dataset and file."""
    require_columns(table.columns, declared_columns(contract), where)
    table = table.drop(columns=[c for c in contract.exclude if c in table.columns])
    for column, dtype in contract.dtypes.items():
        table[column] = _cast(table[column], dtype, column, where)
    if contract.label is not None and contract.positive_class is not None:
        table[contract.label] = _binary_label(table[contract.label], contract.positive_class, contract.label, where)
    categorical = contract.categorical
    if categorical:
        table = one_hot(table, categorical if isinstance(categorical, dict) else dict.fromkeys(categorical), where)
    check_ids(table, contract.id_columns or [], where)
    return table


def require_columns(present: Iterable[Any], columns: Iterable[str], where: str) -> None:
    """ContractError naming the declared `columns` missing from the data's `present` ones."""
    present = [str(c) for c in present]
    missing = sorted({c for c in columns if c not in present})
    if missing:
        raise ContractError(f"{where}: column(s) {', '.join(map(repr, missing))} declared in the catalog are not in "
                            f"the data (it has {len(present)} columns: {_names(present)}); fix the "
                            "catalog entry or the data")


def _names(columns: Iterable[Any], limit: int = 12) -> str:
    names = [str(c) for c in columns]
    return ", ".join(names[:limit]) + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _cast(values: pd.Series, dtype: DType, column: str, where: str) -> pd.Series:
    try:
        if dtype == "str":
            return values.astype("string")
        if dtype == "bool":
            return values.astype("boolean")
        cast = pd.to_numeric(values, errors="raise")
        return cast.astype("float64") if dtype == "float" else cast.astype("Int64")
    except (ValueError, TypeError) as err:
        bad = int((pd.to_numeric(values, errors="coerce").isna() & values.notna()).sum())
        raise ContractError(f"{where}: column {column!r} is declared {dtype} in the catalog, but {bad} of its "
                            f"{len(values)} values are not ({type(err).__name__}); fix the data or the "
                            "declared dtype") from None


def _binary_label(values: pd.Series, positive: str | int, column: str, where: str) -> pd.Series:
    if values.isna().any():
        raise ContractError(f"{where}: label {column!r} is missing on {int(values.isna().sum())} row(s); drop or "
                            "label those rows before training")
    as_text = values.astype(str)
    hits = as_text == str(positive)
    if not hits.any():
        raise ContractError(f"{where}: no row of label {column!r} equals the declared positive_class; check "
                            "positive_class in the catalog")
    return hits.astype(np.int64)


def one_hot(table: pd.DataFrame, categories: dict[str, list[Any] | None], where: str) -> pd.DataFrame:
    """Replace each categorical column by 0/1 columns `<column>=<category>`; a missing value is all zeros.

    Categories come from the mapping when declared (a value outside them is refused: a model cannot use a
    category it never saw), else from this party's own values, sorted."""
    parts = []
    for column, declared in categories.items():
        values = table[column].astype("string")
        present = values.dropna().unique().tolist()
        if declared is None:
            levels = sorted(present)
        else:
            levels = [str(v) for v in declared]
            unknown = sorted(set(present) - set(levels))
            if unknown:
                raise ContractError(f"{where}: column {column!r} holds {len(unknown)} value(s) outside its declared "
                                    "categories; add them to categorical in the catalog")
        codes = pd.Categorical(values, categories=levels).codes
        encoded = (codes[:, None] == np.arange(len(levels))[None, :]).astype(np.float64)
        parts.append(pd.DataFrame(encoded, columns=[f"{column}={level}" for level in levels], index=table.index))
    return pd.concat([table.drop(columns=list(categories)), *parts], axis=1)


def check_ids(table: pd.DataFrame, id_columns: list[str], where: str) -> None:
    """Every row has an ID and no ID repeats (an alignment by ID would otherwise be ambiguous)."""
    if not id_columns:
        return
    ids = table[id_columns]
    missing = int(ids.isna().any(axis=1).sum())
    if missing:
        raise ContractError(f"{where}: {missing} row(s) have no value in ID column(s) {id_columns}; drop those rows "
                            "or fill their IDs")
    repeated = ids.duplicated(keep=False).to_numpy()
    if repeated.any():
        rows = np.flatnonzero(repeated)[:5] + 1
        raise ContractError(f"{where}: {int(repeated.sum())} rows share an ID in {id_columns} (data rows "
                            f"{', '.join(map(str, rows))}, ...); make IDs unique or declare more id_columns")


def task_defaults(contracts: Iterable[DataContract], task: str, where: str) -> dict[str, Any]:
    """The params the contracts of every dataset a task uses supply; they must agree where two declare one."""
    merged: dict[str, Any] = {}
    for contract in contracts:
        for name, value in contract.declared.items():
            if merged.setdefault(name, value) != value:
                raise ContractError(f"{where}: task {task!r} uses datasets whose catalog entries declare different "
                                    f"{name} ({merged[name]!r} and {value!r}); set {name} in the task's params")
    return merged
