"""`evaluate` reports the same numbers as scikit-learn on the same predictions, for each task type."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from sharedml.ml import metrics
from sharedml.ml.evaluate import EvaluateParams, evaluate, evaluate_table
from sharedml.runtime.simulate import SimulationError, simulate

RNG = np.random.default_rng(7)


def binary_table(n: int = 2000) -> pd.DataFrame:
    y = RNG.integers(0, 2, n)
    score = np.round(np.clip(0.3 * y + RNG.normal(0.35, 0.2, n), 0, 1), 2)  # rounded: many tied scores
    return pd.DataFrame({"id": np.arange(n), "y": y, "score": score, "predicted": (score >= 0.5).astype(int)})


def test_binary_metrics_equal_sklearn():
    table = binary_table()
    y, score = table["y"].to_numpy(), table["score"].to_numpy()
    report = evaluate_table(table, EvaluateParams(threshold=0.5))
    predicted = (score >= 0.5).astype(int)
    assert report["task_type"] == "binary"
    assert report["auc"] == pytest.approx(skm.roc_auc_score(y, score), abs=1e-12)
    fpr, tpr, _ = skm.roc_curve(y, score, drop_intermediate=False)
    assert report["ks"] == pytest.approx(np.max(tpr - fpr), abs=1e-12)
    assert report["accuracy"] == pytest.approx(skm.accuracy_score(y, predicted))
    assert report["precision"] == pytest.approx(skm.precision_score(y, predicted))
    assert report["recall"] == pytest.approx(skm.recall_score(y, predicted))
    assert report["f1"] == pytest.approx(skm.f1_score(y, predicted))
    assert report["confusion_matrix"]["counts"] == skm.confusion_matrix(y, predicted).tolist()


def test_curves_equal_sklearn_and_are_thinned_for_plotting():
    table = binary_table()
    y, score = table["y"].to_numpy(), table["score"].to_numpy()
    full = metrics.roc_curve(y, score)
    fpr, tpr, thresholds = skm.roc_curve(y, score, drop_intermediate=False)
    np.testing.assert_allclose(full["fpr"], fpr)
    np.testing.assert_allclose(full["tpr"], tpr)
    np.testing.assert_allclose(full["threshold"][1:], thresholds[1:])
    pr = metrics.pr_curve(y, score)
    precision, recall, _ = skm.precision_recall_curve(y, score, drop_intermediate=False)
    np.testing.assert_allclose(pr["precision"], precision[:-1][::-1])
    np.testing.assert_allclose(pr["recall"], recall[:-1][::-1])
    report = evaluate_table(table, EvaluateParams(curve_points=20))
    roc = report["roc_curve"]
    assert len(roc["fpr"]) == 20 and roc["fpr"][0] == 0 and roc["fpr"][-1] == 1 and roc["tpr"][-1] == 1


def test_lift_and_gain_by_decile():
    y = np.r_[np.ones(10), np.zeros(90)]
    score = np.linspace(1, 0, 100)  # the 10 positives score highest
    table = metrics.lift_gain(y, score, groups=10)
    assert table["gain"][0] == 1.0 and table["lift"][0] == pytest.approx(10.0)
    assert table["gain"][-1] == 1.0 and table["lift"][-1] == pytest.approx(1.0)
    np.testing.assert_allclose(table["share"], np.arange(1, 11) / 10)


def test_multiclass_and_regression_equal_sklearn():
    y = RNG.integers(0, 4, 500)
    predicted = np.where(RNG.random(500) < 0.7, y, RNG.integers(0, 4, 500))
    multi = pd.DataFrame({"y": y, **{f"score_{k}": RNG.random(500) for k in range(4)}, "predicted": predicted})
    report = evaluate_table(multi, EvaluateParams())
    assert report["task_type"] == "multiclass"
    assert report["accuracy"] == pytest.approx(skm.accuracy_score(y, predicted))
    assert report["macro_f1"] == pytest.approx(skm.f1_score(y, predicted, average="macro"))
    assert report["confusion_matrix"]["counts"] == skm.confusion_matrix(y, predicted).tolist()

    target = RNG.normal(size=300)
    guess = target + RNG.normal(scale=0.3, size=300)
    report = evaluate_table(pd.DataFrame({"y": target, "predicted": guess}), EvaluateParams())
    assert report["task_type"] == "regression"
    assert report["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(target, guess)))
    assert report["mae"] == pytest.approx(skm.mean_absolute_error(target, guess))
    assert report["r2"] == pytest.approx(skm.r2_score(target, guess))


def test_component_logs_metrics_and_names_a_missing_label():
    table = binary_table(300)
    out = simulate(lambda ctx: (evaluate(ctx, EvaluateParams(), table), ctx.metrics.latest()), ["bank"])
    report, logged = out["bank"]
    assert logged["auc"] == report["report"]["auc"] and "threshold" not in logged
    with pytest.raises(SimulationError, match="party .bank.*no label column .target."):
        simulate(lambda ctx: evaluate(ctx, EvaluateParams(label="target"), table), ["bank"])
