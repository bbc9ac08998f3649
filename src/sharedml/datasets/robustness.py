"""Robustness data sets: seeded, generated here (numpy only; nothing is downloaded), split per party.

Why: defaults tuned on one data set (default_credit) broke on data nobody tuned them to (issue 20).
Each family below isolates one trait that real tables have and that trips a fragile default:

- `heavy_tailed`: incomes, balances and ratios, log-normal, with 0.5 % outliers at 10^4-10^6 times
  the column's median (data-entry errors, a ratio over a near-zero denominator): the standard
  deviation is the outliers', so a standardised column has its bulk squeezed into a sliver.
- `tiny_scale`: rates and shares with standard deviations of 0.01-0.05 (plus two ordinary columns):
  unscaled SGD needs weights of 20-100 and a step size nobody sets.
- `imbalanced`: 3 % positives (within 2-7 % for any seed at 10^3 rows or more).
- `categorical`: three text columns (3, 5 and 8 levels, uneven frequencies) beside numeric ones.
- `missing`: 20 % of the feature cells missing at random.

Every family is a logistic model of a correlated Gaussian latent (one shared factor, so the columns of
different parties are correlated too, as joined tables are) observed through the family's transforms,
so a well-fitted linear model is a sensible reference. Two data sets bundled with scikit-learn (no
download either) complete the suite: `breast_cancer` (binary) and `diabetes` (regression).

A `Dataset` holds the raw table (categories as text) and the held-out test rows; it hands out the
numeric view (categories one-hot encoded, as the models take them), a vertical split (a guest with
the label and hosts with the other columns, the rows already aligned as after `psi`) and a horizontal
one (clients with the same columns, different rows, and the test table). IDs are under `customer_id`
and the label is `target`, so that callers must name them.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

ID = "customer_id"
LABEL = "target"
FAMILIES = ("heavy_tailed", "tiny_scale", "imbalanced", "categorical", "missing")
BUNDLED = ("breast_cancer", "diabetes")
TEST_SHARE = 0.25  # rows held out for the test table
CLIENT_SHARES = (0.5, 0.3, 0.2)  # horizontal clients' shares of the training rows: uneven on purpose
OUTLIER_SHARE = 0.005  # heavy_tailed: rows of each heavy column that hold an outlier
OUTLIER_DECADES = (4.0, 6.0)  # outliers at 10^4 .. 10^6 times the column's median
PREVALENCE = 0.03  # imbalanced: share of positives
MISSING_SHARE = 0.2  # missing: share of feature cells left empty
LATENT_CORRELATION = 0.3  # between any two latent columns (one shared factor)


@dataclass(frozen=True)
class Vertical:
    """Aligned rows split by columns: `train`/`test` map guest, host_1, ... to that party's table."""

    train: dict[str, pd.DataFrame]
    test: dict[str, pd.DataFrame]


@dataclass(frozen=True)
class Horizontal:
    """Rows split among clients with the same columns, and the held-out `test` table (same columns)."""

    clients: dict[str, pd.DataFrame]
    test: pd.DataFrame


@dataclass(frozen=True)
class Dataset:
    """One family at one size: the raw table (`ID`, `LABEL`, features in party order), test rows last."""

    name: str
    task: str  # binary | regression
    table: pd.DataFrame
    test_rows: int
    categories: dict[str, list[str]] = field(default_factory=dict)  # text column -> its levels

    @property
    def features(self) -> list[str]:
        """The raw feature columns, in the order they are dealt to parties."""
        return [c for c in self.table.columns if c not in (ID, LABEL)]

    def numeric(self) -> pd.DataFrame:
        """The table the models take: each text column replaced, in place, by one 0/1 column per level
        (`column=level`), with the levels fixed by the generator so train and test rows agree."""
        parts = []
        for column in self.table.columns:
            if column in self.categories:
                codes = pd.Categorical(self.table[column], categories=self.categories[column]).codes
                levels = self.categories[column]
                onehot = (codes[:, None] == np.arange(len(levels))[None, :]).astype(np.float64)
                parts.append(pd.DataFrame(onehot, columns=[f"{column}={level}" for level in levels]))
            else:
                parts.append(self.table[[column]].reset_index(drop=True))
        return pd.concat(parts, axis=1)

    def _view(self, raw: bool) -> pd.DataFrame:
        return self.table if raw else self.numeric()

    def owners(self, hosts: int = 2) -> dict[str, list[str]]:
        """Raw feature columns of each vertical party, dealt round-robin (guest first), so every party
        gets some of each kind of column the family generates."""
        parties = ["guest"] + [f"host_{k}" for k in range(1, hosts + 1)]
        return {p: self.features[i::len(parties)] for i, p in enumerate(parties)}

    def vertical(self, hosts: int = 2, raw: bool = False) -> Vertical:
        """The guest gets `ID`, `LABEL` and its columns; each host `ID` and its columns (one-hot columns of
        a text column stay with its owner). Rows are aligned across parties, as after `psi`."""
        view = self._view(raw)
        split = len(view) - self.test_rows
        tables = {}
        for party, columns in self.owners(hosts).items():
            own = [c for c in view.columns if _source(c, self.categories) in columns]
            keep = [ID] + ([LABEL] if party == "guest" else []) + own
            tables[party] = view[keep]
        return Vertical({p: t.iloc[:split].reset_index(drop=True) for p, t in tables.items()},
                        {p: t.iloc[split:].reset_index(drop=True) for p, t in tables.items()})

    def horizontal(self, clients: int = 3, raw: bool = False) -> Horizontal:
        """Training rows dealt to `clients` in shares of `CLIENT_SHARES` (equal shares for other counts)."""
        view = self._view(raw)
        split = len(view) - self.test_rows
        shares = np.asarray(CLIENT_SHARES if clients == len(CLIENT_SHARES) else [1.0 / clients] * clients)
        bounds = np.rint(np.cumsum(shares) * split).astype(np.int64)
        starts = np.concatenate([[0], bounds[:-1]])
        return Horizontal({f"client_{k + 1}": view.iloc[a:b].reset_index(drop=True)
                           for k, (a, b) in enumerate(zip(starts, bounds, strict=True))},
                          view.iloc[split:].reset_index(drop=True))


def make(name: str, rows: int = 10_000, seed: int = 0) -> Dataset:
    """Family `name` (see `FAMILIES`, `BUNDLED`) with `rows` rows in all (bundled sets keep their own size),
    a quarter of them held out as test rows; the same (name, rows, seed) always gives the same table."""
    if name in BUNDLED:
        return _bundled(name, seed)
    if name not in FAMILIES:
        raise ValueError(f"unknown robustness data set {name!r}; choose from {FAMILIES + BUNDLED}")
    if rows < 100:
        raise ValueError(f"{name}: at least 100 rows, got {rows}")
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    features, logit, categories = _GENERATORS[name](rng, rows)
    prevalence = PREVALENCE if name == "imbalanced" else None
    y = (rng.random(rows) < _sigmoid(logit + _intercept(logit, prevalence))).astype(np.int64)
    table = pd.concat([pd.DataFrame({ID: 1_000_000 + rng.permutation(rows), LABEL: y}), features], axis=1)
    return Dataset(name, "binary", table, int(round(rows * TEST_SHARE)), categories)


def impute_with_own_means(train: pd.DataFrame, *others: pd.DataFrame,
                          exclude: tuple[str, ...] = (ID, LABEL)) -> list[pd.DataFrame]:
    """Fill each feature's missing cells of `train` and of `others` with that column's mean over `train`:
    what a party does to its own columns, alone, before a model that takes no NaN."""
    columns = [c for c in train.select_dtypes("number").columns if c not in exclude]
    means = train[columns].mean()
    return [frame.fillna(means) for frame in (train, *others)]


# -- the families --------------------------------------------------------------------------------
Generated = tuple[pd.DataFrame, np.ndarray, dict[str, list[str]]]  # features, logit (no intercept), categories


def _latent(rng: np.random.Generator, rows: int, width: int) -> np.ndarray:
    """Standard normal columns, every pair correlated by `LATENT_CORRELATION` through one shared factor."""
    shared = rng.standard_normal((rows, 1))
    own = rng.standard_normal((rows, width))
    return np.sqrt(LATENT_CORRELATION) * shared + np.sqrt(1 - LATENT_CORRELATION) * own


def _with_outliers(rng: np.random.Generator, values: np.ndarray) -> np.ndarray:
    """`values` with `OUTLIER_SHARE` of its cells replaced by its median times 10^4 .. 10^6."""
    hit = rng.random(len(values)) < OUTLIER_SHARE
    factor = 10.0 ** rng.uniform(*OUTLIER_DECADES, size=len(values))
    return np.where(hit, np.median(values) * factor, values)


def _heavy_tailed(rng: np.random.Generator, rows: int) -> Generated:
    z = _latent(rng, rows, 9)
    columns = {  # in party order (round-robin from the guest): heavy columns at every party
        "income": _with_outliers(rng, 40_000 * np.exp(0.9 * z[:, 0])),
        "debt_to_income": _with_outliers(rng, 0.35 * np.exp(0.6 * z[:, 1])),
        "balance": _with_outliers(rng, 2_000 * np.exp(1.5 * z[:, 2])),
        "age": np.rint(45 + 12 * z[:, 3]),
        "payment_ratio": _with_outliers(rng, 0.8 * np.exp(0.7 * z[:, 4])),
        "savings": _with_outliers(rng, 5_000 * np.exp(1.2 * z[:, 5])),
        "utilisation": _sigmoid(z[:, 6]),
        "tenure_months": np.rint(np.exp(3 + 0.5 * z[:, 7])),
        "bureau_score": 600 + 80 * z[:, 8],
    }
    beta = np.array([-0.5, 0.6, -0.3, 0.4, -0.5, 0.6, -0.4, -0.3, -0.5])
    return pd.DataFrame(columns), z @ beta, {}


def _tiny_scale(rng: np.random.Generator, rows: int) -> Generated:
    z = _latent(rng, rows, 8)
    means = np.array([0.03, 0.12, 0.5, 0.02, 0.25, 0.6])
    stds = np.array([0.01, 0.02, 0.05, 0.012, 0.03, 0.04])
    rates = means + stds * z[:, :6]
    names = ["default_rate", "churn_share", "approval_rate", "fraud_rate", "return_share", "repeat_share"]
    table = pd.DataFrame(rates, columns=names)
    table["monthly_spend"] = 1_500 + 600 * z[:, 6]
    table["age"] = np.rint(45 + 12 * z[:, 7])
    beta = np.array([0.7, -0.5, 0.4, 0.6, -0.4, 0.5, 0.3, -0.2])
    return table, z @ beta, {}


def _imbalanced(rng: np.random.Generator, rows: int) -> Generated:
    z = _latent(rng, rows, 8)
    columns = {
        "amount": 300 * np.exp(0.8 * z[:, 0]),
        "velocity_24h": rng.poisson(np.exp(1 + 0.5 * z[:, 1])).astype(np.float64),
        "account_age_days": np.rint(np.exp(6 + 0.7 * z[:, 2])),
        "distance_km": 20 * np.exp(1.0 * z[:, 3]),
        "hour_sin": np.sin(np.pi * _sigmoid(z[:, 4])),
        "device_score": 0.5 + 0.15 * z[:, 5],
        "failed_logins": rng.poisson(np.exp(-1 + 0.8 * z[:, 6])).astype(np.float64),
        "merchant_risk": 3 + z[:, 7],
    }
    beta = np.array([0.8, 0.7, -0.6, 0.6, -0.3, -0.5, 0.7, 0.6])
    return pd.DataFrame(columns), z @ beta, {}


def _categorical(rng: np.random.Generator, rows: int) -> Generated:
    z = _latent(rng, rows, 5)
    levels = {"region": 8, "product": 5, "channel": 3}
    table, logit, categories = {}, z @ np.array([0.5, -0.4, 0.4, -0.3, 0.3]), {}
    for column, count in levels.items():
        names = [f"{column}_{k}" for k in range(count)]
        codes = rng.choice(count, size=rows, p=rng.dirichlet(np.full(count, 2.0)))
        logit = logit + rng.normal(0.0, 0.6, count)[codes]
        table[column], categories[column] = np.asarray(names, dtype=object)[codes], names
    table.update({"income": 40_000 * np.exp(0.6 * z[:, 0]), "age": np.rint(45 + 12 * z[:, 1]),
                  "tenure_months": np.rint(np.exp(3 + 0.5 * z[:, 2])), "balance": 2_000 * np.exp(0.8 * z[:, 3]),
                  "bureau_score": 600 + 80 * z[:, 4]})
    return pd.DataFrame(table), logit, categories


def _missing(rng: np.random.Generator, rows: int) -> Generated:
    z = _latent(rng, rows, 9)
    values = np.column_stack([
        40_000 * np.exp(0.6 * z[:, 0]), 45 + 12 * z[:, 1], 0.3 + 0.1 * z[:, 2], 2_000 * np.exp(0.8 * z[:, 3]),
        rng.poisson(np.exp(1 + 0.4 * z[:, 4])), 600 + 80 * z[:, 5], z[:, 6], 10 + 3 * z[:, 7], 100 * z[:, 8],
    ]).astype(np.float64)
    values[rng.random(values.shape) < MISSING_SHARE] = np.nan
    names = ["income", "age", "utilisation", "balance", "open_accounts", "bureau_score", "behaviour_index",
             "tenure_years", "net_flow"]
    beta = np.array([0.5, -0.4, 0.6, -0.3, 0.4, -0.5, 0.5, -0.3, 0.4])
    return pd.DataFrame(values, columns=names), z @ beta, {}


_GENERATORS: dict[str, Callable[[np.random.Generator, int], Generated]] = {
    "heavy_tailed": _heavy_tailed, "tiny_scale": _tiny_scale, "imbalanced": _imbalanced,
    "categorical": _categorical, "missing": _missing,
}


def _bundled(name: str, seed: int) -> Dataset:
    """A data set shipped inside scikit-learn, rows shuffled by `seed`; `breast_cancer`'s label is 1 = malignant."""
    from sklearn import datasets

    if name == "breast_cancer":
        bunch, task = datasets.load_breast_cancer(), "binary"
        target = 1 - bunch.target  # sklearn's 1 is benign; the rarer, interesting class is the positive one
    else:
        bunch, task = datasets.load_diabetes(scaled=False), "regression"
        target = bunch.target
    order = np.random.default_rng([seed, zlib.crc32(name.encode())]).permutation(len(target))
    features = pd.DataFrame(bunch.data[order], columns=[c.replace(" ", "_") for c in bunch.feature_names])
    table = pd.concat([pd.DataFrame({ID: 1_000_000 + np.arange(len(order)), LABEL: target[order]}), features], axis=1)
    return Dataset(name, task, table, int(round(len(order) * TEST_SHARE)))


def _intercept(logit: np.ndarray, prevalence: float | None) -> float:
    """0, or the intercept b at which the mean of sigmoid(logit + b) is `prevalence` (by bisection on b)."""
    if prevalence is None:
        return 0.0
    low, high = -30.0, 30.0
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if _sigmoid(logit + middle).mean() < prevalence else (low, middle)
    return (low + high) / 2


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _source(column: str, categories: dict[str, list[str]]) -> str:
    """The raw column a numeric-view column comes from (`region=region_3` -> `region`)."""
    head = column.split("=", 1)[0]
    return head if head in categories else column
