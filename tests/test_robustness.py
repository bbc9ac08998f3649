"""Defaults that hold on data nobody tuned them to (issue 20): one test per robustness family, small sizes.

Each test runs models with their DEFAULT parameters (only the label, ID columns, seed and, for speed, 1024-bit
HE keys are set) on a family of `sharedml.datasets.robustness`, and checks the test-AUC gap to the plaintext
reference fitted on the same rows against the bar of `benchmarks/robustness.py`, whose runners and
references these tests reuse (docs/robustness.md has the full-size table).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from sharedml.datasets.robustness import (
    CLIENT_SHARES,
    FAMILIES,
    ID,
    LABEL,
    MISSING_SHARE,
    OUTLIER_DECADES,
    TEST_SHARE,
    make,
)

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "robustness.py"


def _benchmark():
    spec = importlib.util.spec_from_file_location("robustness_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


bench = _benchmark()


HORIZONTAL_ROWS = 10_000  # homo_* run in about a second at this size, where bin choices stop moving AUC by 0.01


def _within_bar(family: str, rows: int, *models: str) -> None:
    """Every model's gap to its reference on `family` within the benchmark's tolerance: vertical models at
    `rows` rows (HE makes them the slow ones), horizontal ones at `HORIZONTAL_ROWS`."""
    found = []
    for model in models:
        size = HORIZONTAL_ROWS if bench.MODELS[model].kind == "horizontal" else rows
        found.append(bench.measure(model, make(family, size, seed=0), seed=0, fast=True))
    failed = [f"{r.model}: {r.ours:.4f} vs {r.reference:.4f} (gap {r.gap:+.4f}, bar {-r.tolerance:+.4f})"
              for r in found if not r.ok]
    assert not failed, f"{family}: " + "; ".join(failed)


def test_the_generator_is_seeded_and_each_family_has_its_trait():
    again = make("heavy_tailed", 1000, seed=0)
    assert again.table.equals(make("heavy_tailed", 1000, seed=0).table)
    assert not again.table.equals(make("heavy_tailed", 1000, seed=1).table)
    income = again.table["income"].to_numpy()
    ratio = income / np.median(income)
    assert 10 ** OUTLIER_DECADES[0] <= ratio.max() <= 10 ** OUTLIER_DECADES[1] and (ratio > 1e3).mean() < 0.02
    tiny = make("tiny_scale", 4000).table
    assert 0.008 < tiny["default_rate"].std() < 0.012 and tiny["approval_rate"].std() < 0.06
    assert 0.02 <= make("imbalanced", 4000).table[LABEL].mean() <= 0.07
    missing = make("missing", 4000).table.drop(columns=[ID, LABEL])
    assert abs(missing.isna().to_numpy().mean() - MISSING_SHARE) < 0.01
    categorical = make("categorical", 1000)
    assert categorical.table["region"].map(type).eq(str).all() and "region=region_0" in categorical.numeric().columns
    split = categorical.vertical()
    assert list(split.train) == ["guest", "host_1", "host_2"] and LABEL not in split.train["host_1"]
    assert all(t[ID].equals(split.train["guest"][ID]) for t in split.train.values())  # aligned, as after psi
    assert len(split.test["guest"]) == round(1000 * TEST_SHARE)
    sizes = [len(t) for t in categorical.horizontal().clients.values()]
    assert np.allclose(np.array(sizes) / sum(sizes), CLIENT_SHARES, atol=0.01)
    assert set(FAMILIES) == {"heavy_tailed", "tiny_scale", "imbalanced", "categorical", "missing"}


def test_heavy_tailed():
    """Outliers at 10^4-10^6 times the median: federated standardisation keeps homo_lr and homo_nn on track
    (both stayed at AUC 0.5 without it)."""
    _within_bar("heavy_tailed", 0, "homo_lr", "homo_nn")


def test_heavy_tailed_trees():
    """homo_secureboost's sketch cells were equal-width between a column's extremes, so the outliers left the bulk
    of a heavy-tailed column in one bin (AUC 0.67 vs 0.74); its bracket now leaves such outliers out."""
    _within_bar("heavy_tailed", 0, "homo_secureboost")


@pytest.mark.slow
def test_tiny_scale():
    """Features with std 0.01-0.05: homo_lr and homo_nn stayed at AUC 0.5 before federated standardisation;
    hetero_lr on 750 rows (one batch per pass) needs the 100 steps `planned_epochs` gives it."""
    _within_bar("tiny_scale", 1000, "hetero_lr", "homo_lr", "homo_nn", "homo_secureboost")


@pytest.mark.slow
def test_imbalanced():
    """3 % positives. At this size AUC on 30 test positives is too coarse to tell hetero_lr's old default from
    the new one (the old one fell 0.017 short at 10^4 rows, docs/robustness.md); it checks that Adam holds."""
    _within_bar("imbalanced", 4000, "hetero_lr", "homo_lr", "homo_nn", "homo_secureboost")


def test_categorical():
    """Text columns, one-hot encoded (each party encodes its own)."""
    _within_bar("categorical", 0, "homo_lr", "homo_nn", "homo_secureboost")


def test_missing():
    """20 % missing cells: trees take them as they are; linear models and the MLP get each party's own means."""
    _within_bar("missing", 0, "homo_lr", "homo_nn", "homo_secureboost")


@pytest.mark.slow
def test_breast_cancer():
    """569 rows (scikit-learn's bundled set), below one batch: hetero_lr and ss_lr train 100 passes
    (`planned_epochs`); ss_lr's former default (10 passes of plain SGD) fell 0.020 short here."""
    _within_bar("breast_cancer", 0, "hetero_lr", "ss_lr", "homo_lr", "homo_nn", "homo_secureboost")


def test_hetero_secureboost_with_two_hosts_is_repeatable_and_equals_xgboost():
    """Missing values and two hosts make tied host candidates common. Tied candidates may differ in their exact
    left sums, and the guest took the children's totals from whichever came first in the host's random shuffle:
    three runs with one seed gave test AUC 0.684, 0.696 and 0.693 against XGBoost's 0.686 on the same bins."""
    data = make("missing", 3000, seed=0)
    first, second = (bench.measure("hetero_secureboost", data, seed=0, fast=True) for _ in range(2))
    assert first.ours == second.ours == first.reference
