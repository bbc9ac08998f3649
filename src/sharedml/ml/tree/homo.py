"""Job components `homo_secureboost` (train) and `homo_secureboost_predict`: boosted trees on horizontally split rows.

Every client holds different rows with the same feature columns and the label; the `aggregator` holds
no data. The aggregator grows XGBoost-style trees (``ml/tree``: same gain, lambda, gamma,
min_child_weight, tie-breaking and leaf weights as `PlainBoost`) from per-bin gradient histograms that
are summed over the clients by secure aggregation, so it learns only sums over all clients' rows.

Protocol (all sums through `secure_aggregate`, or in the clear with ``secure_aggregation: false``):
1. hello: clients send a hash of their feature names; the aggregator refuses mismatched columns.
2. common bins, without anyone revealing raw values: clients sum [rows, label sum, counts of each
   feature over a fixed coarse grid of asinh(x)]; the non-empty coarse cells bracket each feature's
   range (for a heavy-tailed feature only its central mass: see `_brackets`). Clients then sum counts
   over ``sketch_bins`` equal-width cells of that bracket, and the
   aggregator takes ``max_bin`` quantiles of the summed counts as bin edges (cell upper bounds) and
   sends them to the clients. The base score is the label mean from the first sum.
3. per tree, per level: clients compute g, h of their rows from the public model, and the histograms
   (G, H per feature and bin) of the level's nodes; the root's is summed, then at each further level
   only the left children's (the aggregator gets each right child as parent minus left, halving
   traffic). The aggregator finds every node's best split and sends them; clients route their rows.
   Leaf weights come from the summed (G, H); the finished tree goes to every client.

All clients must take part in every sum (a tree's histograms must cover the same rows at every
level), so the secure-aggregation threshold is the number of clients and a dropout fails the job.
Fixed point: each summed coordinate is clipped to a bound declared by the params (rows x the bound of
|g| or h: 1 and 1/4 for logistic, ``max_abs_gradient`` for regression); a client whose values exceed
the bound stops with an error rather than bias the model silently.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from ...fl.rounds import aggregator_of, check_hello, require_client_copy, signature
from ...fl.secagg import AGGREGATOR, CLIENT, secure_aggregate
from ...runtime.component import ColumnList, component
from ...runtime.context import Context
from ..preprocess.binning import QuantileBinner
from ..tables import PredictParams, feature_matrix, label_column, model_columns, prediction_table
from .histogram import build_histogram
from .joint_predict import transform
from .objectives import get_objective, initial_margin
from .params import TreeParams
from .plain import Tree, TreeBuilder
from .split import Split, find_best_split, leaf_weight

COARSE_CELLS = 1024  # cells of the fixed asinh grid that brackets each feature's range
OUTLIER_STRETCH = 64  # a feature's extremes stretching its range more than this get trimmed (see _brackets)
COARSE_LIMIT = 48.0  # asinh(x) in [-48, 48] covers |x| up to ~3e20; larger values fall in the end cells
MAX_FRAC_BITS = 40  # finest fixed-point precision of a secure sum (per-client error <= 2^-41 per coordinate)
_HESS_BOUND = {"binary:logistic": 0.25, "reg:squarederror": 1.0}


class HomoBoostParams(TreeParams):
    """The tree parameters every learner shares (`params.py`), and what horizontal training adds."""

    label: str = Field("y", description="the label column, at every client")
    id_columns: ColumnList = Field(default_factory=lambda: ["id"], description="columns that are not features")
    objective: Literal["binary:logistic", "reg:squarederror"] = "binary:logistic"
    sketch_bins: int = Field(1024, ge=16, le=65536, description="fine grid cells per feature for the common bins")
    max_abs_gradient: float = Field(100.0, gt=0, description="reg:squarederror: declared bound on |label| and |g|")
    max_client_rows: int = Field(2**20, ge=1, description="declared bound on one client's rows (sets the clip)")
    secure_aggregation: bool = Field(True, description="false: clients send histograms in the clear (debugging)")
    min_clients: int = Field(2, ge=1, description="the job fails with fewer clients")
    round_timeout: float = Field(60.0, gt=0, description="seconds the aggregator waits for clients in each sum")

    @property
    def gradient_bound(self) -> float:
        """Declared bound on |g| (and on |label| for the base score): 1 for logistic (|p - y| <= 1)."""
        return 1.0 if self.objective == "binary:logistic" else self.max_abs_gradient

    @property
    def histogram_clip(self) -> float:
        """Bound on one client's per-bin |G| and H: its rows times the per-row bound."""
        return self.max_client_rows * max(self.gradient_bound, _HESS_BOUND[self.objective])


# --- sums: secure or in the clear -----------------------------------------------------------------------


def _sum(ctx: Context, p: HomoBoostParams, vector: np.ndarray | None, clip: float, tag: str) -> np.ndarray | None:
    """The clients' vectors summed at the aggregator (None at clients), through secure aggregation or not."""
    clients = ctx.parties_with_role(CLIENT)
    if vector is not None:
        largest = float(np.max(np.abs(vector), initial=0.0))
        if largest > clip:
            raise ValueError(f"client {ctx.party!r}: a value of its `{tag}` sum reaches {largest:.4g}, above the "
                             f"declared bound {clip:g}; raise max_client_rows (or max_abs_gradient for regression)")
    if p.secure_aggregation:
        try:
            result = secure_aggregate(ctx, vector, threshold=len(clients), clip=clip,
                                      frac_bits=frac_bits(clip, len(clients)),
                                      dropout_timeout=p.round_timeout, tag=tag)
        except RuntimeError as err:
            raise RuntimeError(f"`{tag}`: secure aggregation needs every one of the {len(clients)} clients and "
                               f"some did not answer within round_timeout = {p.round_timeout:g} s: {err}") from err
        return None if result is None else result.total
    if vector is not None:
        ctx.send(aggregator_of(ctx), tag, vector)
        return None
    got = ctx.gather(tag, clients, timeout=p.round_timeout)
    return np.sum([np.asarray(got[c], dtype=np.float64) for c in clients], axis=0)


def frac_bits(clip: float, n_clients: int) -> int:
    """The most fractional bits the secure sum allows: the sum of n clipped inputs must fit a signed 64-bit
    ring and each scaled input float64's 53-bit mantissa. Fine precision matters: a quantisation error
    larger than float32 rounding of the gains could flip a near-tie and grow a different tree than in the clear.
    """
    magnitude = math.ceil(math.log2(clip + 1))
    bits = min(MAX_FRAC_BITS, 52 - magnitude, 62 - math.ceil(math.log2(n_clients)) - magnitude)
    if bits < 8:
        raise ValueError(f"the declared bound {clip:g} leaves only {bits} fractional bits for a secure sum over "
                         f"{n_clients} clients; lower max_client_rows (or max_abs_gradient for regression)")
    return bits


# --- common bins ------------------------------------------------------------------------------------------


def _coarse_counts(X: np.ndarray) -> np.ndarray:
    """Counts of each feature's non-missing values over the fixed asinh grid, shape (f, COARSE_CELLS)."""
    present = ~np.isnan(X)
    t = np.clip(np.arcsinh(np.where(present, X, 0.0)), -COARSE_LIMIT, COARSE_LIMIT)
    cell = np.minimum(((t + COARSE_LIMIT) / (2 * COARSE_LIMIT) * COARSE_CELLS).astype(np.int64), COARSE_CELLS - 1)
    return _counts(cell, present, COARSE_CELLS)


def _counts(cell: np.ndarray, present: np.ndarray, cells: int) -> np.ndarray:
    """Counts per feature of the integer `cell` of each row (shape (n, f)) -> (f, cells), skipping absent values."""
    flat = (cell + np.arange(cell.shape[1]) * cells)[present]
    return np.bincount(flat, minlength=cell.shape[1] * cells).reshape(cell.shape[1], cells).astype(np.float64)


def _brackets(coarse: np.ndarray, max_bin: int) -> np.ndarray:
    """(f, 2) low/high of each feature: the outer bounds of its first and last non-empty coarse cells, or, for a
    heavy-tailed feature, of the coarse cells that hold its central mass.

    The sketch's `sketch_bins` cells are equal-width over the bracket. When the extreme 1/(4 max_bin) of a
    feature's values at either end stretch its range more than OUTLIER_STRETCH times (incomes with outliers
    at 10^6 times the median), the bulk would share a handful of cells and the bins could not separate it
    (homo_secureboost was 0.074 AUC short on such data). Those extremes are then left out of the bracket and
    fall in its end cells; no bin edge, a quantile k/max_bin, lies among them, so only the bulk's resolution
    changes. Other features keep their full bracket, and so their bins."""
    width = 2 * COARSE_LIMIT / COARSE_CELLS
    out = np.zeros((len(coarse), 2))
    for j, counts in enumerate(coarse):
        filled = np.flatnonzero(counts)
        if not filled.size:
            continue
        cells = np.array([filled[0], filled[-1] + 1])
        cumulative = np.cumsum(counts)
        tail = cumulative[-1] / (4 * max_bin)
        central = np.array([np.searchsorted(cumulative, tail, side="right"),
                            np.searchsorted(cumulative, cumulative[-1] - tail, side="left") + 1])
        full, bulk = np.sinh(-COARSE_LIMIT + width * cells), np.sinh(-COARSE_LIMIT + width * central)
        stretched = np.ptp(full) > OUTLIER_STRETCH * max(np.ptp(bulk), np.finfo(float).tiny)
        out[j] = bulk if stretched else full
    return out


def _fine_counts(X: np.ndarray, brackets: np.ndarray, cells: int) -> np.ndarray:
    """Counts over `cells` equal-width cells (low, high] of each feature's bracket, shape (f, cells)."""
    low, high = brackets[:, 0], brackets[:, 1]
    width = np.where(high > low, (high - low) / cells, 1.0)
    with np.errstate(invalid="ignore"):
        cell = np.clip(np.ceil((X - low) / width) - 1, 0, cells - 1)
    present = ~np.isnan(X)
    return _counts(np.where(present, cell, 0).astype(np.int64), present, cells)


def _edges(fine: np.ndarray, brackets: np.ndarray, max_bin: int) -> list[np.ndarray]:
    """Bin edges: the upper bound of the cell holding each quantile k / max_bin of the summed counts."""
    cells = fine.shape[1]
    edges = []
    for counts, (low, high) in zip(fine, brackets, strict=True):
        total = counts.sum()
        if total == 0:
            edges.append(np.zeros(0))
            continue
        cumulative = np.cumsum(counts)
        chosen = np.searchsorted(cumulative, np.arange(1, max_bin + 1) / max_bin * total - 1e-9, side="left")
        edges.append(np.unique(low + (np.minimum(chosen, cells - 1) + 1) * (high - low) / cells))
    return edges


# --- the aggregator ---------------------------------------------------------------------------------------


@dataclass
class _Open:
    """A node of the current level: its id, its (G, H) totals and its summed histogram (None at the last level)."""

    id: int
    totals: tuple[float, float]
    hist: tuple[np.ndarray, np.ndarray] | None


def _aggregator_train(ctx: Context, p: HomoBoostParams) -> dict[str, Any]:
    clients = ctx.parties_with_role(CLIENT)
    if len(clients) < max(p.min_clients, 2 if p.secure_aggregation else 1):
        raise ValueError(f"min_clients is {p.min_clients} (secure aggregation needs 2) but the task has "
                         f"{len(clients)} client(s); add clients or lower min_clients")
    n_features, _ = check_hello(ctx.gather("hsb/hello", clients, timeout=p.round_timeout))
    ctx.broadcast("hsb/start", {}, clients)
    first = _sum(ctx, p, None, p.max_client_rows * p.gradient_bound, "hsb/stats")
    assert first is not None
    n_rows, label_sum = round(first[0]), first[1]
    if n_rows < 1:
        raise ValueError("the clients hold no rows between them; give them training rows")
    brackets = _brackets(np.rint(first[2:]).reshape(n_features, COARSE_CELLS), p.max_bin)  # counts: whole numbers
    ctx.broadcast("hsb/brackets", brackets, clients)
    fine = _sum(ctx, p, None, float(p.max_client_rows), "hsb/sketch")
    assert fine is not None
    binner = QuantileBinner(p.max_bin)
    binner.edges = _edges(np.rint(fine).reshape(n_features, p.sketch_bins), brackets, p.max_bin)
    base = get_objective(p.objective).base_margin(np.array([label_sum / n_rows]))
    ctx.broadcast("hsb/bins", {"binner": binner.to_dict(), "base_margin": base}, clients)
    trees = []
    for t in range(p.n_estimators):
        ctx.progress(t, p.n_estimators, f"tree {t + 1} of {p.n_estimators}")
        tree = _grow(ctx, p, t, n_features)
        ctx.broadcast(f"hsb/{t}/tree", _tree_dict(tree, binner), clients)
        trees.append(_tree_dict(tree, binner))
    ctx.progress(p.n_estimators, p.n_estimators, f"{p.n_estimators} trees")
    return _model(p, binner, base, trees, None)


def _grow(ctx: Context, p: HomoBoostParams, t: int, n_features: int) -> Tree:
    """One tree, level by level, from summed histograms; mirrors `plain.grow_tree`."""
    shape = (n_features, p.max_bin + 1)
    clients = ctx.parties_with_role(CLIENT)
    builder = TreeBuilder()
    root = _unpack(_sum(ctx, p, None, p.histogram_clip, f"hsb/{t}/0/hist"), shape, 1)[0]
    level = [_Open(builder.add(), (float(root[0][0].sum()), float(root[1][0].sum())), root)]
    leaves: list[_Open] = []
    for depth in range(p.max_depth):
        splits = [find_best_split(*node.hist, p, node.totals) for node in level]
        ctx.broadcast(f"hsb/{t}/{depth}/splits", [_wire(s) for s in splits], clients)
        children: list[tuple[Split, _Open]] = []
        for node, split in zip(level, splits, strict=True):
            if split is None:
                leaves.append(node)
            else:
                children.append((split, node))
        if not children or depth + 1 == p.max_depth:
            level = _children(builder, children, [None] * len(children))
            break
        lefts = _unpack(_sum(ctx, p, None, p.histogram_clip, f"hsb/{t}/{depth + 1}/hist"), shape, len(children))
        level = _children(builder, children, lefts)
    for node in leaves + level:
        builder.set_leaf(node.id, p.learning_rate * leaf_weight(*node.totals, p.reg_lambda))
    return builder.tree()


def _children(builder: TreeBuilder, children: list[tuple[Split, _Open]],
              lefts: list[Any]) -> list[_Open]:
    """Record the splits and open both children of each; the right histogram is the parent's minus the left."""
    opened = []
    for (split, node), left_hist in zip(children, lefts, strict=True):
        right_hist = None if left_hist is None else (node.hist[0] - left_hist[0], node.hist[1] - left_hist[1])
        left = _Open(builder.add(), (split.g_left, split.h_left), left_hist)
        right = _Open(builder.add(), (split.g_right, split.h_right), right_hist)
        builder.set_split(node.id, split, left.id, right.id)
        opened += [left, right]
    return opened


def _unpack(total: np.ndarray | None, shape: tuple[int, int], nodes: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """A summed level vector [G_0, H_0, G_1, H_1, ...] back into per-node (G, H) histograms."""
    assert total is not None
    parts = total.reshape(nodes, 2, *shape)
    return [(part[0], part[1]) for part in parts]


def _wire(split: Split | None) -> list[int] | None:
    return None if split is None else [split.feature, split.bin, int(split.default_left)]


# --- a client ---------------------------------------------------------------------------------------------


def _client_train(ctx: Context, p: HomoBoostParams, names: list[str], X: np.ndarray,
                  y: np.ndarray) -> dict[str, Any]:
    server = aggregator_of(ctx)
    if len(y) > p.max_client_rows:
        raise ValueError(f"client {ctx.party!r} has {len(y)} rows, above max_client_rows = {p.max_client_rows}; "
                         "raise max_client_rows")
    ctx.send(server, "hsb/hello", {"signature": signature(names), "size": len(names), "validates": False,
                                   "metrics": []})
    ctx.recv(server, "hsb/start")
    stats = np.concatenate([[len(y), y.sum()], _coarse_counts(X).ravel()])
    _sum(ctx, p, stats, p.max_client_rows * p.gradient_bound, "hsb/stats")
    brackets = np.asarray(ctx.recv(server, "hsb/brackets"), dtype=np.float64)
    _sum(ctx, p, _fine_counts(X, brackets, p.sketch_bins).ravel(), float(p.max_client_rows), "hsb/sketch")
    bins = ctx.recv(server, "hsb/bins")
    binner = QuantileBinner.from_dict(bins["binner"])
    codes = binner.transform(X)
    base = np.asarray(bins["base_margin"], dtype=np.float64)
    objective = get_objective(p.objective)
    margin = initial_margin(base, len(y))
    trees = []
    for t in range(p.n_estimators):
        g, h = objective.grad_hess(y, margin)
        if np.max(np.abs(g), initial=0.0) > p.gradient_bound:
            raise ValueError(f"client {ctx.party!r}: a gradient of tree {t} exceeds max_abs_gradient = "
                             f"{p.max_abs_gradient:g}; raise max_abs_gradient")
        _client_tree(ctx, p, t, codes, g, h, server)
        tree = ctx.recv(server, f"hsb/{t}/tree")
        trees.append(tree)
        margin += _as_tree(tree).predict(codes, binner.missing_bin)
    return _model(p, binner, base, trees, names)


def _client_tree(ctx: Context, p: HomoBoostParams, t: int, codes: np.ndarray, g: np.ndarray, h: np.ndarray,
                 server: str) -> None:
    """Contribute the histograms of one tree's levels, routing rows by the aggregator's splits."""
    position = np.zeros(len(g), dtype=np.int64)  # each row's node in the current level, -1 once in a leaf
    _sum(ctx, p, _level_vector([np.arange(len(g))], codes, g, h, p.max_bin), p.histogram_clip, f"hsb/{t}/0/hist")
    for depth in range(p.max_depth):
        splits = ctx.recv(server, f"hsb/{t}/{depth}/splits")
        position, lefts = _route(position, splits, codes, p.max_bin)
        if not lefts or depth + 1 == p.max_depth:
            return
        _sum(ctx, p, _level_vector(lefts, codes, g, h, p.max_bin), p.histogram_clip, f"hsb/{t}/{depth + 1}/hist")


def _route(position: np.ndarray, splits: list[list[int] | None], codes: np.ndarray,
           missing: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Rows' positions in the next level (children in split order, left then right) and each left child's rows."""
    new = np.full_like(position, -1)
    lefts = []
    opened = 0
    for node, split in enumerate(splits):
        if split is None:
            continue
        rows = np.flatnonzero(position == node)
        feature, b, default_left = split
        column = codes[rows, feature]
        go_left = np.where(column == missing, bool(default_left), column <= b)
        new[rows] = np.where(go_left, opened, opened + 1)
        lefts.append(rows[go_left])
        opened += 2
    return new, lefts


def _level_vector(nodes: list[np.ndarray], codes: np.ndarray, g: np.ndarray, h: np.ndarray,
                  max_bin: int) -> np.ndarray:
    """The (G, H) histograms of the given nodes' rows, flattened and concatenated: one sum per level."""
    return np.concatenate([np.stack(build_histogram(codes, rows, g, h, max_bin)).ravel() for rows in nodes])


# --- the model --------------------------------------------------------------------------------------------


def _tree_dict(tree: Tree, binner: QuantileBinner) -> dict[str, list]:
    """A tree as lists, with each split's real threshold (x <= threshold goes left) from the common edges."""
    thresholds = [binner.threshold(int(f), int(b)) if f >= 0 else None
                  for f, b in zip(tree.feature, tree.bin, strict=True)]
    return {"feature": tree.feature.tolist(), "bin": tree.bin.tolist(), "default_left": tree.default_left.tolist(),
            "left": tree.left.tolist(), "right": tree.right.tolist(), "value": tree.value.tolist(),
            "threshold": thresholds}


def _as_tree(tree: dict[str, list]) -> Tree:
    return Tree(*(np.asarray(tree[k], dtype=dt) for k, dt in (
        ("feature", np.int32), ("bin", np.int32), ("default_left", bool), ("left", np.int32), ("right", np.int32),
        ("value", np.float64))))


def _model(p: HomoBoostParams, binner: QuantileBinner, base: np.ndarray, trees: list[dict],
           names: list[str] | None) -> dict[str, Any]:
    """The global model; the aggregator knows only a hash of the feature names, so its copy has None."""
    return {"type": "homo_secureboost", "objective": p.objective, "base_margin": base.tolist(),
            "binner": binner.to_dict(), "trees": trees, "features": names}


def predict_margin(model: dict[str, Any], X: np.ndarray) -> np.ndarray:
    """Raw scores of rows X (the model's feature columns, in order)."""
    binner = QuantileBinner.from_dict(model["binner"])
    codes = binner.transform(X)
    margin = initial_margin(np.asarray(model["base_margin"], dtype=np.float64), len(X))
    for tree in model["trees"]:
        margin += _as_tree(tree).predict(codes, binner.missing_bin)
    return margin


def _predict(ctx: Context, model: dict[str, Any], data: pd.DataFrame, id_columns: list[str], label: str | None,
             what: str) -> pd.DataFrame:
    score, predicted = transform(model, predict_margin(model, model_columns(ctx, data, model["features"], what)))
    return prediction_table(data, id_columns, label, score, predicted)


def _labels(ctx: Context, table: pd.DataFrame, p: HomoBoostParams) -> np.ndarray:
    y = label_column(ctx, table, p.label, "train")
    if p.objective == "binary:logistic" and not np.all((y == 0) | (y == 1)):
        raise ValueError(f"client {ctx.party!r}: label {p.label!r} must be 0/1 for objective binary:logistic")
    if not np.all(np.isfinite(y)) or np.max(np.abs(y), initial=0.0) > p.gradient_bound:
        raise ValueError(f"client {ctx.party!r}: label {p.label!r} holds NaN or values above {p.gradient_bound:g} "
                         "in absolute value; clean it or raise max_abs_gradient")
    return y


@component("homo_secureboost", params=HomoBoostParams, roles=(AGGREGATOR, CLIENT), inputs=("train",),
           optional_inputs=("test",), outputs=("model", "predictions"), min_parties=3)
def homo_secureboost(ctx: Context, params: HomoBoostParams, train: pd.DataFrame | None = None,
                     test: pd.DataFrame | None = None) -> dict[str, object]:
    """Horizontal boosted trees: the aggregator grows them from securely summed gradient histograms."""
    started = time.perf_counter()
    if ctx.role == AGGREGATOR:
        model = _aggregator_train(ctx, params)
        ctx.metrics.log("seconds", round(time.perf_counter() - started, 3))
        return {"model": model}
    if train is None:
        raise ValueError(f"client {ctx.party!r} has no `train` input; every client needs its rows")
    names, X = feature_matrix(ctx, train, params.id_columns + [params.label])
    model = _client_train(ctx, params, names, X, _labels(ctx, train, params))
    scored = train if test is None else test
    label = params.label if params.label in scored.columns else None
    predictions = _predict(ctx, model, scored, params.id_columns, label, "test" if test is not None else "train")
    ctx.metrics.log("seconds", round(time.perf_counter() - started, 3))
    return {"model": model, "predictions": predictions}


@component("homo_secureboost_predict", params=PredictParams, inputs=("model", "data"), outputs=("predictions",))
def homo_secureboost_predict(ctx: Context, params: PredictParams, model: dict, data: pd.DataFrame) -> dict:
    """Batch prediction with a homo_secureboost model, locally at a party that holds rows (no communication)."""
    require_client_copy(ctx, model, "homo_secureboost")
    label = params.label if params.label is not None and params.label in data.columns else None
    return {"predictions": _predict(ctx, model, data, params.id_columns, label, "data")}
