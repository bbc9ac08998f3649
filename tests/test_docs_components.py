"""The example of docs/components.md really runs: its component, its simulate() block and its job."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from sharedml.jobs.catalog import Catalog
from sharedml.jobs.runner import LocalRunner
from sharedml.jobs.spec import parse_job
from sharedml.runtime import component as registry
from sharedml.runtime.simulate import SimulationError, simulate

DOC = Path(__file__).resolve().parents[1] / "docs" / "components.md"
NAME = "pooled_mean"


def _block(language: str, marker: str) -> str:
    """The one fenced `language` block of the doc that contains `marker`."""
    blocks = [body for lang, body in re.findall(r"^```(\w+)\n(.*?)^```", DOC.read_text(), re.M | re.S)
              if lang == language and marker in body]
    assert len(blocks) == 1, f"expected one {language} block with {marker!r} in {DOC}, found {len(blocks)}"
    return blocks[0]


@pytest.fixture(scope="module")
def example() -> dict:
    """Execute the example component's code block, as a site's module would be imported."""
    assert NAME not in registry.registered()
    namespace: dict = {"__name__": "docs_pooled_mean"}
    exec(compile(_block("python", f'@component("{NAME}"'), str(DOC), "exec"), namespace)
    yield namespace
    registry._REGISTRY.pop(NAME, None)  # leave the registry as the other tests expect it


def test_the_simulate_block_gives_the_pooled_mean(example):
    namespace: dict = {"__name__": "docs_try_it"}
    exec(compile(_block("python", "simulate("), str(DOC), "exec"), namespace)
    results = namespace["results"]
    assert sorted(results) == ["bank", "insurer", "shop"]
    for outputs in results.values():
        row = outputs["result"].iloc[0]
        assert (row["column"], row["rows"]) == ("value", 6)
        assert row["mean"] == pytest.approx(35.0, abs=1e-9)


def test_negative_values_and_party_counts(example):
    comp = registry.get_component(NAME)
    tables = {"a": [-12.5, 3.0], "b": [-100.25], "c": [7.0, 8.0, 9.0], "d": []}
    params = comp.params(scale=100)

    def party(ctx):
        return comp.func(ctx, params, data=pd.DataFrame({"value": tables[ctx.party]}, dtype=float))

    out = simulate(party, list(tables))
    pooled = [v for values in tables.values() for v in values]
    assert out["d"]["result"]["mean"].iloc[0] == pytest.approx(sum(pooled) / len(pooled), abs=1e-9)
    assert comp.min_parties == 3 and comp.outputs == ("result",)
    with pytest.raises(SimulationError, match="no column 'amount'"):
        simulate(lambda ctx: comp.func(ctx, comp.params(column="amount"), data=pd.DataFrame({"value": [1.0]})),
                 ["a", "b", "c"], timeout=5)


def test_a_peer_that_sends_garbage_is_named(example):
    comp = registry.get_component(NAME)

    def party(ctx):
        if ctx.party == "c":  # a faulty peer: a share outside the ring
            for peer in ctx.peers:
                ctx.send(peer, "share", [-1, 0])
            return None
        return comp.func(ctx, comp.params(), data=pd.DataFrame({"value": [1.0]}))

    with pytest.raises(SimulationError) as failure:
        simulate(party, ["a", "b", "c"], timeout=5)
    assert "party 'c' sent share -1" in str(failure.value)


def test_the_job_block_runs_with_its_params(example, tmp_path):
    """The doc's job YAML through the job engine: `column` and `scale` travel from the YAML to the function."""
    spec = parse_job(_block("yaml", f"component: {NAME}"), "docs/components.md")
    amounts = {"bank": [120.0, 80.5], "insurer": [99.99], "shop": [10.0, 20.0, 30.0]}
    catalogs = {}
    for party, values in amounts.items():
        folder = tmp_path / party
        folder.mkdir()
        pd.DataFrame({"id": range(len(values)), "amount": values}).to_csv(folder / "claims.csv", index=False)
        catalogs[party] = Catalog.from_mapping({"datasets": {"claims": {"path": "claims.csv"}}}, party, folder)
    result = LocalRunner(tmp_path / "runs").run(spec, catalogs, mode="threads", timeout=30)
    assert result.state == "succeeded", result.error
    pooled = [v for values in amounts.values() for v in values]
    for party in amounts:
        row = result.output(party, "mean", "result").iloc[0]
        assert (row["column"], row["rows"]) == ("amount", len(pooled))
        assert row["mean"] == pytest.approx(round(sum(pooled) * 100) / 100 / len(pooled), abs=1e-9)
