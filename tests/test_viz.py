"""Figures and the report page are drawn from what a job stored, for any component that stores it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("matplotlib")

import sharedml as sm  # noqa: E402
from sharedml.jobs.results import collect  # noqa: E402
from sharedml.ml.evaluate import binary_report, multiclass_report  # noqa: E402
from sharedml.viz import figures  # noqa: E402
from sharedml.viz.page import job_page  # noqa: E402


def _binary():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    return binary_report(y, np.clip(0.3 * y + rng.random(400) * 0.7, 0, 1))


def test_every_binary_figure_is_drawn_from_the_report():
    report = _binary()
    drawn = figures.report_figures(report)
    assert [f.axes[0].get_title().split()[0] for f in drawn] == ["ROC", "precision-recall", "KS", "gain",
                                                                   "confusion"]
    roc_line = drawn[0].axes[0].lines[0]
    assert np.array_equal(roc_line.get_xdata(), report["roc_curve"]["fpr"])
    assert f"{report['auc']:.4f}" in drawn[0].axes[0].get_title()


def test_a_multiclass_report_gets_its_confusion_matrix_only():
    report = multiclass_report(np.array([0, 1, 2, 2, 1]), np.array([0, 2, 2, 2, 1]))
    (only,) = figures.report_figures(report)
    assert only.axes[0].get_title() == "confusion matrix"
    with pytest.raises(ValueError, match="binary"):
        figures.roc(report)


def test_curves_take_every_metric_logged_with_steps():
    records = [{"name": "loss", "value": 1 / (s + 1), "step": s} for s in range(5)]
    records += [{"name": "auc", "value": 0.9, "step": None}, {"name": "lonely", "value": 1.0, "step": 0}]
    (loss,) = figures.curves(records)
    assert loss.axes[0].get_title() == "loss" and list(loss.axes[0].lines[0].get_xdata()) == [0, 1, 2, 3, 4]


def test_the_job_page_and_the_api_plots(tmp_path):
    parts = sm.datasets.load("breast_hetero")
    fed = sm.Federation.local({"bank": "guest", "insurer": "host"}, workdir=tmp_path)
    train = fed.vertical({"bank": parts["guest"].iloc[:400], "insurer": parts["host"]})
    test = fed.vertical({"bank": parts["guest"].iloc[400:], "insurer": parts["host"]})
    model = sm.SecureBoostClassifier(n_estimators=3, key_bits=1024).fit(train)
    report = model.evaluate(test)
    assert model.plot_roc().axes[0].get_title() == f"ROC  (AUC {report['auc']:.4f})"
    assert isinstance(model.importance_["insurer"], pd.DataFrame)
    assert model.plot_importance("insurer").axes[0].get_title().startswith("feature importance")

    store = fed.runner.store
    scoring = next(j for j in store.jobs() if j.name.endswith("score"))
    job, results = collect(fed.runner.workdir, store, scoring.id)
    page = job_page(job, results)
    assert page.count("data:image/png;base64,") == 5  # the report's five figures
    assert "report &middot; bank" in page and f"{report['auc']:.4g}" in page
    assert "<script" not in page  # self-contained and inert
