"""Federated standardisation: `homo_scale` and the scaler `homo_lr` / `homo_nn` share (`stats.federated_scaler`)
equal scikit-learn's StandardScaler fitted on the union of the clients' rows, every party gets the same
figures, and nothing a client holds crosses the wire in the clear."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import StandardScaler

from sharedml.datasets.robustness import ID, LABEL, make
from sharedml.fl.stats import federated_scaler
from sharedml.ml.preprocess.homo_scale import HomoScaleParams, homo_scale
from sharedml.runtime.peer_values import BadPeerValue
from sharedml.runtime.simulate import SimulationError, simulate

PARAMS = HomoScaleParams(id_columns=[ID], label=LABEL)
ROLES = {"server": "aggregator", "client_1": "client", "client_2": "client", "client_3": "client"}


def _clients(family: str = "heavy_tailed", rows: int = 2000) -> dict[str, pd.DataFrame]:
    return make(family, rows, seed=4).horizontal().clients


def _run(clients: dict[str, pd.DataFrame], params: HomoScaleParams = PARAMS, recorder=None) -> dict:
    def party(ctx):
        return homo_scale(ctx, params, data=clients.get(ctx.party))

    return simulate(party, ROLES, timeout=60, recorder=recorder)


def test_every_client_is_scaled_by_the_union_statistics_and_nothing_crosses_in_the_clear():
    clients = _clients()  # heavy tails: outliers at 10^4-10^6 times the median stress the fixed point
    records = []
    out = _run(clients, recorder=records.append)
    features = [c for c in clients["client_1"].columns if c not in (ID, LABEL)]
    union = pd.concat(clients.values())
    reference = StandardScaler().fit(union[features].to_numpy())
    for party, table in clients.items():
        model, scaled = out[party]["model"], out[party]["data"]
        assert model["columns"] == features
        np.testing.assert_allclose(model["offset"], reference.mean_, rtol=1e-12)
        np.testing.assert_allclose(model["scale"], reference.scale_, rtol=1e-12)
        np.testing.assert_allclose(scaled[features], reference.transform(table[features].to_numpy()), atol=1e-9)
        assert scaled[[ID, LABEL]].equals(table[[ID, LABEL]])  # passed through untouched
    assert out["server"]["model"]["columns"] is None  # the aggregator learns the figures, never the names
    np.testing.assert_allclose(out["server"]["model"]["offset"], reference.mean_, rtol=1e-12)
    # A client's own column sums and means never travel in the clear (only shares and partial sums do).
    wire = b"".join(bytes(r.payload) for r in records)
    assert reference.mean_[:2].tobytes() not in wire  # not even the global figures: each party decodes them
    for table in clients.values():
        values = table[features].to_numpy()
        for own in (values.sum(axis=0), values.mean(axis=0), ((values - reference.mean_) ** 2).sum(axis=0)):
            assert own[:2].tobytes() not in wire


def test_a_fitted_scaler_is_applied_to_new_rows_locally_and_missing_values_stay_missing():
    clients = _clients("missing")
    fitted = _run(clients)["client_2"]["model"]
    fresh = make("missing", 400, seed=9).horizontal().test
    applied = simulate(lambda ctx: homo_scale(ctx, PARAMS, data=fresh, model=fitted),
                       {"client_2": "client"})["client_2"]
    X = fresh[fitted["columns"]].to_numpy()
    expected = (X - np.asarray(fitted["offset"])) / np.asarray(fitted["scale"])
    np.testing.assert_allclose(applied["data"][fitted["columns"]].to_numpy(), expected)
    assert np.array_equal(np.isnan(applied["data"][fitted["columns"]].to_numpy()), np.isnan(X))
    with pytest.raises(SimulationError, match="model of a aggregator"):
        server_copy = _run(clients)["server"]["model"]
        simulate(lambda ctx: homo_scale(ctx, PARAMS, data=fresh, model=server_copy), {"c": "client"})


def test_clients_with_different_columns_are_named_before_any_sum():
    clients = _clients()
    clients["client_3"] = clients["client_3"].rename(columns={"income": "income_eur"})
    with pytest.raises(SimulationError, match=r"client\(s\) \['client_3'\] have different feature columns"):
        _run(clients)


@pytest.mark.parametrize("claim", [10**12, -3, "30", 2.5, True, {"columns": 3}])
def test_a_nonsensical_column_announcement_is_refused_before_anything_is_sized_by_it(claim):
    def party(ctx):
        if ctx.party == "liar":
            ctx.broadcast("scaler/columns", {"columns": claim, "signature": "s"} if not isinstance(claim, dict)
                          else claim)
            return None
        return federated_scaler(ctx, None, None)

    with pytest.raises(SimulationError) as caught:
        simulate(party, {"server": "aggregator", "liar": "client"}, timeout=5)
    assert isinstance(caught.value.errors["server"], BadPeerValue), caught.value.errors
    assert "party 'liar' sent" in str(caught.value.errors["server"])
