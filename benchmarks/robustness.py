"""Robustness benchmark (issue 20): every model with its DEFAULT parameters on data nobody tuned them to,
beside the plaintext reference fitted on the same training rows and scored on the same held-out rows.

    python benchmarks/robustness.py [--rows 10000] [--families heavy_tailed ... breast_cancer diabetes]
                                    [--models hetero_lr ss_lr ...] [--seed 0] [--fast] [--processes]

`--processes` runs every model as the issue's bar asks: each party its own OS process, gRPC with mutual
TLS, through the Python API, so the IDs (`customer_id`) and the label (`target`) are declared only in the
parties' catalogs (the data contract) and a PSI aligns the rows first; without it every party is a thread
of this process (`simulate`), which computes the same with less start-up.

Data: `sharedml.datasets.robustness` (generated here, nothing downloaded): heavy-tailed, tiny-scale,
imbalanced, categorical (one-hot, as the models take it) and 20 %-missing families at `--rows` rows
(a quarter held out), three parties (vertical: a guest and two hosts; horizontal: three clients with
50/30/20 % of the rows), plus scikit-learn's bundled breast_cancer and diabetes (their own sizes).

Parameters: the components' defaults; the benchmark sets only `label`, `id_columns` and `seed` (which
fixes the randomness, not a setting of the model). `--fast` also lowers the HE keys to 1024 bits
(hetero_lr, hetero_linr, hetero_secureboost): the numbers are the same up to fixed-point noise, the run is
several times shorter, and the table says FAST on every such row; only a run without it measures the
defaults as shipped. ss_lr's default dealer-free tuples take one guest and one host, so it runs on the
guest and one host holding both hosts' columns. Where a model takes no missing values (the linear
models, homo_nn), every party fills its own columns with its own training means, and the reference
gets the very same filled rows; the tree models and XGBoost take the NaNs as they are.

References (plaintext, central): hetero_lr and ss_lr: scikit-learn's LogisticRegression on the
standardised joined columns with the same L2 (C = 1 / (alpha n)); homo_lr: the same on the union of
the clients' rows; hetero_secureboost: XGBoost (hist) on the same per-party quantile bins with the same
trees; homo_secureboost: XGBoost (hist) on the union with the same number of bins and trees; homo_nn:
scikit-learn's MLPClassifier with the same layers, optimiser, step, batch and number of epochs on the
standardised union; hetero_linr: Ridge with the same L2 (alpha n). Each row prints the model's test
AUC (RMSE for regression), the reference's, the gap (negative: ours is worse; for RMSE relative to
the reference's) and the tolerance; the run exits 1 if any row is below its tolerance.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sharedml.datasets.robustness import (
    BUNDLED,
    FAMILIES,
    ID,
    LABEL,
    Dataset,
    Horizontal,
    Vertical,
    impute_with_own_means,
    make,
)
from sharedml.ml.linear.hetero import HeteroGLMParams, HeteroLRParams, hetero_linr, hetero_lr, hetero_lr_predict
from sharedml.ml.linear.homo import HomoLRParams, homo_lr
from sharedml.ml.linear.ss_component import SSLRParams, ss_lr, ss_lr_predict
from sharedml.ml.metrics import rmse, roc_auc
from sharedml.ml.preprocess import QuantileBinner
from sharedml.ml.tables import PredictParams
from sharedml.ml.tree.hetero import SecureBoostParams, hetero_secureboost, hetero_secureboost_predict
from sharedml.ml.tree.homo import HomoBoostParams, homo_secureboost
from sharedml.runtime.simulate import simulate

FAST_KEY_BITS = 1024  # --fast only: HE keys below the 2048-bit default
TIMEOUT = 3600.0  # seconds a simulated run may take
NAMES = {"label": LABEL, "id_columns": [ID]}
ESTIMATOR = {"hetero_lr": "HeteroLogisticRegression", "hetero_linr": "HeteroLinearRegression",
             "ss_lr": "SSLogisticRegression", "hetero_secureboost": "SecureBoostClassifier",
             "homo_lr": "HomoLogisticRegression", "homo_nn": "HomoNNClassifier",
             "homo_secureboost": "HomoSecureBoostClassifier"}  # --processes: the API's model for each component


@dataclass(frozen=True)
class Model:
    """How to run one component on a data set and what to compare it with."""

    kind: str  # vertical | horizontal
    task: str  # binary | regression
    tolerance: float  # the bar: gap >= -tolerance
    run: Callable[[Dataset, dict[str, Any]], float]
    reference: Callable[[Dataset, dict[str, Any]], float]
    takes_nan: bool = False
    he: bool = False  # has HE keys that --fast shrinks
    hosts: int = 2  # vertical: hosts besides the guest


@dataclass(frozen=True)
class Row:
    family: str
    model: str
    metric: str
    ours: float
    reference: float
    tolerance: float
    seconds: float
    fast: bool

    @property
    def gap(self) -> float:
        """How much better ours is: AUC difference, or the RMSE's shortfall relative to the reference's."""
        if self.metric == "AUC":
            return self.ours - self.reference
        return (self.reference - self.ours) / self.reference

    @property
    def ok(self) -> bool:
        return self.gap >= -self.tolerance


# -- data as each model takes it -----------------------------------------------------------------
def vertical(data: Dataset, model: Model) -> Vertical:
    """The vertical split for `model`, each party's NaNs filled with its own training means if it needs."""
    split = data.vertical(hosts=model.hosts)
    if model.takes_nan:
        return split
    filled = {p: impute_with_own_means(split.train[p], split.test[p]) for p in split.train}
    return Vertical({p: f[0] for p, f in filled.items()}, {p: f[1] for p, f in filled.items()})


def horizontal(data: Dataset, model: Model) -> Horizontal:
    """The horizontal split; without NaN support every client fills its own rows with its own means, and the
    test table (scored at the first client) with the first client's."""
    split = data.horizontal()
    if model.takes_nan:
        return split
    first = next(iter(split.clients))
    clients = {c: impute_with_own_means(t)[0] for c, t in split.clients.items()}
    return Horizontal(clients, impute_with_own_means(split.clients[first], split.test)[1])


def joined(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The parties' aligned tables side by side (the plaintext a central reference sees)."""
    guest, *hosts = tables.values()
    return pd.concat([guest, *(h.drop(columns=[ID]) for h in hosts)], axis=1)


def xy(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return table.drop(columns=[ID, LABEL]).to_numpy(np.float64), table[LABEL].to_numpy()


def build(params: type, extra: dict[str, Any]) -> Any:
    """`params` with the label and ID names, plus those of `extra` (seed, key_bits) that it has."""
    return params(**NAMES, **{k: v for k, v in extra.items() if k in params.model_fields})


def score(task: str, predictions: pd.DataFrame) -> float:
    y = predictions[LABEL].to_numpy()
    return roc_auc(y, predictions["score"].to_numpy()) if task == "binary" else rmse(y, predictions["predicted"])


# -- our components, in simulation or as processes -------------------------------------------------
PROCESSES = False  # --processes: through the API, one OS process per party (set by main)


def _tuned(params: Any) -> dict[str, Any]:
    """The parameters the benchmark set besides the names (seed, key_bits): what the API is given."""
    return {k: v for k, v in params.model_dump(exclude_unset=True).items() if k not in NAMES}


def _with_labels(scores: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    return scores.merge(test[[ID, LABEL]], on=ID, validate="one_to_one")


def run_vertical(train: Callable, predict: Callable, params: Any, split: Vertical) -> pd.DataFrame:
    """Train at every party, then score the test rows with the trained parts; the guest's predictions."""
    if PROCESSES:
        import sharedml as sm

        fed = sm.Federation.local({p: "guest" if p == "guest" else "host" for p in split.train}, mode="processes")
        model = sm.ESTIMATORS[ESTIMATOR[train.__name__]](**_tuned(params))
        model.fit(fed.vertical(split.train, id_columns=ID, label=LABEL))
        test = fed.vertical(split.test, id_columns=ID, label=LABEL)
        scored = model.predict(test) if train is hetero_linr else model.predict_proba(test)
        return _with_labels(scored, split.test["guest"])

    def party(ctx: Any) -> Any:
        model = train(ctx, params, split.train[ctx.party])["model"]
        return predict(ctx, PredictParams(**NAMES), model, split.test[ctx.party]).get("predictions")

    roles = {p: "guest" if p == "guest" else "host" for p in split.train}
    return simulate(party, roles, timeout=TIMEOUT)["guest"]


def run_horizontal(component: Callable, params: Any, split: Horizontal) -> pd.DataFrame:
    """Train with an aggregator and the clients; the first client's predictions on the test table."""
    first = next(iter(split.clients))
    if PROCESSES:
        import sharedml as sm

        fed = sm.Federation.local({"aggregator": "aggregator", **{c: "client" for c in split.clients}},
                                  mode="processes")
        model = sm.ESTIMATORS[ESTIMATOR[component.__name__]](**_tuned(params))
        model.fit(fed.horizontal(split.clients, id_columns=ID, label=LABEL))
        scored = model.predict_proba(fed.horizontal({first: split.test}, id_columns=ID, label=LABEL))
        return _with_labels(scored, split.test)

    def party(ctx: Any) -> Any:
        if ctx.role == "aggregator":
            return component(ctx, params)
        return component(ctx, params, train=split.clients[ctx.party], test=split.test)["predictions"]

    out = simulate(party, {"aggregator": "aggregator", **{c: "client" for c in split.clients}}, timeout=TIMEOUT)
    return out[first]


def ours_hetero_lr(data: Dataset, extra: dict[str, Any]) -> float:
    split = vertical(data, MODELS["hetero_lr"])
    return score("binary", run_vertical(hetero_lr, hetero_lr_predict, build(HeteroLRParams, extra), split))


def ours_hetero_linr(data: Dataset, extra: dict[str, Any]) -> float:
    split = vertical(data, MODELS["hetero_linr"])
    return score("regression", run_vertical(hetero_linr, hetero_lr_predict, build(HeteroGLMParams, extra),
                                            split))


def ours_ss_lr(data: Dataset, extra: dict[str, Any]) -> float:
    split = vertical(data, MODELS["ss_lr"])
    return score("binary", run_vertical(ss_lr, ss_lr_predict, build(SSLRParams, extra), split))


def ours_hetero_secureboost(data: Dataset, extra: dict[str, Any]) -> float:
    split = vertical(data, MODELS["hetero_secureboost"])
    return score("binary", run_vertical(hetero_secureboost, hetero_secureboost_predict,
                                        build(SecureBoostParams, extra), split))


def ours_homo_lr(data: Dataset, extra: dict[str, Any]) -> float:
    return score("binary", run_horizontal(homo_lr, build(HomoLRParams, extra), horizontal(data, MODELS["homo_lr"])))


def ours_homo_nn(data: Dataset, extra: dict[str, Any]) -> float:
    from sharedml.ml.nn.homo import HomoNNParams, homo_nn  # torch is imported only when asked for

    return score("binary", run_horizontal(homo_nn, build(HomoNNParams, extra), horizontal(data, MODELS["homo_nn"])))


def ours_homo_secureboost(data: Dataset, extra: dict[str, Any]) -> float:
    return score("binary", run_horizontal(homo_secureboost, build(HomoBoostParams, extra),
                                          horizontal(data, MODELS["homo_secureboost"])))


# -- plaintext references on the same rows ---------------------------------------------------------
def logistic_auc(train: pd.DataFrame, test: pd.DataFrame, alpha: float) -> float:
    """StandardScaler + LogisticRegression with L2 alpha on the mean loss (none if 0): test AUC."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    (X, y), (X_test, y_test) = xy(train), xy(test)
    C = np.inf if alpha == 0 else 1 / (alpha * len(y))
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=10_000)).fit(X, y)
    return roc_auc(y_test, model.decision_function(X_test))


def ref_hetero_lr(data: Dataset, extra: dict[str, Any]) -> float:
    split = vertical(data, MODELS["hetero_lr"])
    return logistic_auc(joined(split.train), joined(split.test), HeteroLRParams(**NAMES).alpha)


def ref_ss_lr(data: Dataset, extra: dict[str, Any]) -> float:
    split = vertical(data, MODELS["ss_lr"])
    return logistic_auc(joined(split.train), joined(split.test), SSLRParams(**NAMES).alpha)


def ref_homo_lr(data: Dataset, extra: dict[str, Any]) -> float:
    split = horizontal(data, MODELS["homo_lr"])
    return logistic_auc(pd.concat(split.clients.values()), split.test, HomoLRParams(**NAMES).alpha)


def ref_hetero_linr(data: Dataset, extra: dict[str, Any]) -> float:
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    split = vertical(data, MODELS["hetero_linr"])
    (X, y), (X_test, y_test) = xy(joined(split.train)), xy(joined(split.test))
    alpha = HeteroGLMParams(**NAMES).alpha * len(y)
    return rmse(y_test, make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(X, y).predict(X_test))


def ref_hetero_secureboost(data: Dataset, extra: dict[str, Any]) -> float:
    """XGBoost on the codes of the per-party quantile binners our parties fit (missing code -> NaN)."""
    import xgboost as xgb

    p = SecureBoostParams(**NAMES)
    split = vertical(data, MODELS["hetero_secureboost"])
    codes = []
    for party in split.train:
        train, test = (t[party].drop(columns=[ID, LABEL], errors="ignore").to_numpy(np.float64)
                       for t in (split.train, split.test))
        binner = QuantileBinner(p.max_bin).fit(train)
        codes.append([np.where(c == binner.missing_bin, np.nan, c) for c in (binner.transform(train),
                                                                              binner.transform(test))])
    X, X_test = (np.hstack([c[i] for c in codes]).astype(np.float32) for i in (0, 1))
    booster = xgb.train({"objective": "binary:logistic", "tree_method": "hist", "max_depth": p.max_depth,
                         "eta": p.learning_rate, "lambda": p.reg_lambda, "gamma": p.gamma,
                         "min_child_weight": p.min_child_weight, "max_bin": p.max_bin + 1, "nthread": 2},
                        xgb.DMatrix(X, label=split.train["guest"][LABEL].to_numpy()), p.n_estimators)
    return roc_auc(split.test["guest"][LABEL].to_numpy(), booster.predict(xgb.DMatrix(X_test)))


def ref_homo_secureboost(data: Dataset, extra: dict[str, Any]) -> float:
    import xgboost as xgb

    p = HomoBoostParams(**NAMES)
    split = horizontal(data, MODELS["homo_secureboost"])
    (X, y), (X_test, y_test) = xy(pd.concat(split.clients.values())), xy(split.test)
    model = xgb.XGBClassifier(n_estimators=p.n_estimators, max_depth=p.max_depth, learning_rate=p.learning_rate,
                              reg_lambda=p.reg_lambda, gamma=p.gamma, min_child_weight=p.min_child_weight,
                              tree_method="hist", max_bin=p.max_bin, n_jobs=2)
    return roc_auc(y_test, model.fit(X, y).predict_proba(X_test)[:, 1])


def ref_homo_nn(data: Dataset, extra: dict[str, Any]) -> float:
    """The default network, optimiser, step, batch and epochs (rounds x local epochs), trained centrally."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sharedml.ml.nn.homo import HomoNNParams

    p = HomoNNParams(**NAMES)
    split = horizontal(data, MODELS["homo_nn"])
    (X, y), (X_test, y_test) = xy(pd.concat(split.clients.values())), xy(split.test)
    mlp = MLPClassifier(hidden_layer_sizes=tuple(p.model.hidden), activation=p.model.activation, solver=p.optimizer,
                        learning_rate_init=p.learning_rate, batch_size=p.batch_size, alpha=p.weight_decay,
                        max_iter=p.rounds * p.local_epochs, random_state=extra.get("seed", 0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = make_pipeline(StandardScaler(), mlp).fit(X, y)
    return roc_auc(y_test, model.predict_proba(X_test)[:, 1])


MODELS: dict[str, Model] = {
    "hetero_lr": Model("vertical", "binary", 0.005, ours_hetero_lr, ref_hetero_lr, he=True),
    "ss_lr": Model("vertical", "binary", 0.005, ours_ss_lr, ref_ss_lr, hosts=1),
    "hetero_secureboost": Model("vertical", "binary", 0.002, ours_hetero_secureboost, ref_hetero_secureboost,
                                takes_nan=True, he=True),
    "homo_lr": Model("horizontal", "binary", 0.01, ours_homo_lr, ref_homo_lr),
    "homo_nn": Model("horizontal", "binary", 0.02, ours_homo_nn, ref_homo_nn),
    "homo_secureboost": Model("horizontal", "binary", 0.01, ours_homo_secureboost, ref_homo_secureboost,
                              takes_nan=True),
    "hetero_linr": Model("vertical", "regression", 0.01, ours_hetero_linr, ref_hetero_linr, he=True),
}


def measure(model_name: str, data: Dataset, seed: int = 0, fast: bool = False) -> Row:
    """One row: `model_name` with default parameters on `data`, and its reference on the same rows."""
    model = MODELS[model_name]
    extra: dict[str, Any] = {"seed": seed}
    if fast and model.he:
        extra["key_bits"] = FAST_KEY_BITS
    started = time.perf_counter()
    ours = model.run(data, extra)
    seconds = time.perf_counter() - started
    reference = model.reference(data, extra)
    return Row(data.name, model_name, "AUC" if model.task == "binary" else "RMSE", ours, reference, model.tolerance,
               seconds, fast and model.he)


def print_row(row: Row) -> None:
    print(f"{row.family:14} {row.model:19} {row.metric:4} {row.ours:9.4f} {row.reference:9.4f} {row.gap:+8.4f} "
          f"{-row.tolerance:+8.4f} {row.seconds:8.1f}  {'OK' if row.ok else 'FAIL'}{'  FAST' if row.fast else ''}")
    sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000, help="rows of each generated family (a quarter held out)")
    parser.add_argument("--families", nargs="+", default=[*FAMILIES, *BUNDLED], choices=[*FAMILIES, *BUNDLED])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--seed", type=int, default=0, help="data and the models' randomness")
    parser.add_argument("--fast", action="store_true", help=f"NOT the defaults: {FAST_KEY_BITS}-bit HE keys")
    parser.add_argument("--processes", action="store_true", help="every party its own process, gRPC + mutual TLS")
    args = parser.parse_args()
    global PROCESSES
    PROCESSES = args.processes
    print(f"default parameters{' except FAST: ' + str(FAST_KEY_BITS) + '-bit HE keys' if args.fast else ''}; "
          f"{args.rows:,} rows per generated family, seed {args.seed}; "
          f"{'one OS process per party, gRPC + mutual TLS' if PROCESSES else 'parties as threads (simulate)'}")
    print(f"{'family':14} {'model':19} {'':4} {'ours':>9} {'reference':>9} {'gap':>8} {'bar':>8} {'seconds':>8}")
    rows = []
    for family in args.families:
        data = make(family, args.rows, args.seed)
        for name in args.models:
            if MODELS[name].task == data.task:
                rows.append(measure(name, data, args.seed, args.fast))
                print_row(rows[-1])
    failed = [r for r in rows if not r.ok]
    print(f"{len(rows) - len(failed)} of {len(rows)} rows within tolerance")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
