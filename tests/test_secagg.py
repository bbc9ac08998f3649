"""Secure aggregation (SecAgg / SecAgg+): the right sum with and without dropouts, clear failures below the
threshold, and an aggregator transcript that holds no client's input and only uniform-looking masked vectors."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from sharedml.crypto import shamir
from sharedml.fl import secagg
from sharedml.fl.secagg import secure_aggregate
from sharedml.net.serialization import dumps_bytes, loads
from sharedml.runtime.simulate import SimulationError, simulate

CLIENTS = [f"c{i}" for i in range(5)]
FRAC_BITS = 16
CLIP = 1.0


class _Dropped(Exception):
    """Raised inside a client to make it vanish at a chosen point of the protocol."""


class _DroppingContext:
    """A client's context that goes silent just before (or just after) it sends message `step`."""

    def __init__(self, ctx: Any, step: str, after: bool) -> None:
        self._ctx, self._step, self._after = ctx, step, after

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)

    def send(self, peer: str, tag: str, obj: Any) -> None:
        hit = tag.endswith("/" + self._step)
        if hit and not self._after:
            raise _Dropped
        self._ctx.send(peer, tag, obj)
        if hit:
            raise _Dropped


def _inputs(clients: list[str], size: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {c: rng.uniform(-CLIP, CLIP, size) for c in clients}


def _run(xs: dict[str, np.ndarray], *, drop: dict[str, tuple[str, bool]] | None = None, recorder=None,
         **options: Any) -> dict[str, Any]:
    """Simulate one aggregator and the clients of `xs`; `drop` maps a client to (step, after)."""
    options = {"threshold": 3, "clip": CLIP, "frac_bits": FRAC_BITS, "dropout_timeout": 1.0, **options}
    roles = {"server": "aggregator", **{c: "client" for c in xs}}
    drop = drop or {}

    def party(ctx):
        if ctx.party in drop:
            try:
                return secure_aggregate(_DroppingContext(ctx, *drop[ctx.party]), xs[ctx.party], **options)
            except _Dropped:
                return "dropped"
        return secure_aggregate(ctx, xs.get(ctx.party), **options)

    return simulate(party, roles, timeout=10.0, recorder=recorder)


def _quantised(x: np.ndarray, bits: int = 64) -> np.ndarray:
    fixed = np.rint(np.clip(x, -CLIP, CLIP) * 2.0**FRAC_BITS).astype(np.int64)
    return fixed.view(np.uint64) if bits == 64 else fixed.astype(np.int32).view(np.uint32)


def _bound(n: int) -> float:
    return n * 2.0 ** -(FRAC_BITS + 1)


@pytest.mark.parametrize("ring_bits", [64, 32])
def test_sum_equals_numpy_sum_within_quantisation_error(ring_bits):
    xs = _inputs(CLIENTS)
    out = _run(xs, ring_bits=ring_bits)
    result = out["server"]
    assert result.included == CLIENTS and result.dropped == []
    assert np.max(np.abs(result.total - sum(xs.values()))) <= _bound(len(CLIENTS))
    assert all(out[c] is None for c in CLIENTS)


def test_inputs_are_clipped_and_clients_may_get_the_sum():
    xs = {c: np.array([[3.0, -0.25], [-7.5, 0.5]]) for c in CLIENTS[:3]}
    out = _run(xs, threshold=2, reveal_to_clients=True)
    expected = 3 * np.array([[1.0, -0.25], [-1.0, 0.5]])
    assert out["server"].total.shape == (2, 2)
    assert np.allclose(out["server"].total, expected, atol=_bound(3))
    assert all(np.array_equal(out[c].total, out["server"].total) for c in xs)


@pytest.mark.parametrize(("step", "after", "in_sum"), [
    ("masked", True, True),    # sent y_u, then vanished: its b_u is rebuilt and x_u is in the sum
    ("masked", False, False),  # shared its keys but never sent y_u: its s key is rebuilt, x_u is left out
    ("shares", False, False),  # vanished before sharing: nobody masks with it, x_u is left out
])
def test_one_dropout_of_five_with_threshold_three(step, after, in_sum):
    xs = _inputs(CLIENTS)
    records = []
    out = _run(xs, drop={"c2": (step, after)}, recorder=records.append)
    result = out["server"]
    kept = CLIENTS if in_sum else [c for c in CLIENTS if c != "c2"]
    assert out["c2"] == "dropped"
    assert result.included == kept
    assert result.dropped == ([] if in_sum else ["c2"])
    assert np.max(np.abs(result.total - sum(xs[c] for c in kept))) <= _bound(len(kept))
    # What the survivors revealed: self-mask seed shares of the included, mask-key shares only of a client
    # that shared its keys and then vanished, and never both for one client.
    reveals = [loads(r.payload) for r in records if r.key.tag == "secagg/reveal"]
    assert len(reveals) == len(CLIENTS) - 1
    for reveal in reveals:
        assert sorted(reveal["b"]) == result.included
        assert sorted(reveal["s"]) == (["c2"] if step == "masked" and not in_sum else [])


@pytest.mark.parametrize(("step", "after", "answered", "asked"), [
    ("masked", False, 2, 5),  # 3 of 5 vanish before their masked input
    ("reveal", False, 2, 5),  # 3 of 5 vanish in the unmask round
])
def test_fewer_survivors_than_threshold_fail_clearly_and_fast(step, after, answered, asked):
    xs = _inputs(CLIENTS, size=10)
    start = time.monotonic()
    with pytest.raises(SimulationError) as caught:
        _run(xs, drop={c: (step, after) for c in CLIENTS[:3]}, dropout_timeout=0.3)
    assert time.monotonic() - start < 5
    assert caught.value.party == "server"
    message = str(caught.value)
    assert f"only {answered} of {asked} clients answered round {step!r}" in message
    assert "threshold of 3" in message


def _masked_inputs(records) -> dict[str, np.ndarray]:
    return {r.src: np.asarray(loads(r.payload)) for r in records if r.key.tag == "secagg/masked"}


def _chi_square_bytes(arr: np.ndarray) -> float:
    counts = np.bincount(np.frombuffer(arr.tobytes(), dtype=np.uint8), minlength=256)
    expected = counts.sum() / 256
    return float(((counts - expected) ** 2 / expected).sum())


def test_transcript_holds_no_client_input_and_masked_inputs_look_uniform():
    xs = _inputs(CLIENTS)
    records = []
    _run(xs, recorder=records.append)
    wire = b"".join(r.payload for r in records)
    assert all("server" in (r.src, r.dst) for r in records)  # everything is relayed by the aggregator
    for c, x in xs.items():
        encoded = _quantised(x)
        # Control: had c sent its quantised input in the clear, these windows would be on the wire.
        assert encoded[:4].tobytes() in dumps_bytes(encoded)
        for start in range(0, len(encoded) - 4, 50):
            assert encoded[start:start + 4].tobytes() not in wire, f"client {c}'s input crossed the wire"
            assert x[start:start + 4].tobytes() not in wire
    masked = _masked_inputs(records)
    assert sorted(masked) == CLIENTS
    # 255 degrees of freedom: mean 255, sd 22.6; the raw encodings score in the hundreds of thousands.
    limit = 255 + 6 * 22.6
    assert _chi_square_bytes(_quantised(xs["c0"])) > 10 * limit
    for c, y in masked.items():
        assert y.dtype == np.uint64
        assert _chi_square_bytes(y) < limit, f"masked input of {c} does not look uniform"
        top_bit = (y >> np.uint64(63)).mean()
        assert 0.4 < top_bit < 0.6


def test_secagg_plus_sparse_graph_gives_the_same_sum():
    clients = [f"c{i}" for i in range(8)]
    xs = _inputs(clients, size=200)
    result = _run(xs, graph="sparse", neighbours=4, drop={"c5": ("masked", False)})["server"]
    kept = [c for c in clients if c != "c5"]
    assert result.included == kept
    assert np.max(np.abs(result.total - sum(xs[c] for c in kept))) <= _bound(len(kept))


def _setup(n: int, **options: Any) -> secagg._Setup:
    ctx = SimpleNamespace(job_id="job", task="task")
    options = {"threshold": 3, "clip": CLIP, "frac_bits": FRAC_BITS, "ring_bits": 64, "graph": "complete",
               "neighbours": None, "dropout_timeout": 1.0, "reveal_to_clients": False, "tag": "secagg", **options}
    return secagg._setup(ctx, [f"c{i}" for i in range(n)], ["server"], **options)


def test_sparse_graph_is_symmetric_and_k_regular():
    setup = _setup(12, graph="sparse", neighbours=4)
    roster = [f"c{i:02d}" for i in range(12)]
    graph = {p: secagg._neighbours(p, roster, setup, bytes(32)) for p in roster}
    assert all(len(near) == 4 and p not in near for p, near in graph.items())
    assert all(p in graph[v] for p, near in graph.items() for v in near)
    assert secagg._neighbours("c00", roster, setup, bytes(32)) != secagg._neighbours("c00", roster, setup, b"\1" * 32)


def test_secagg_plus_clients_detect_a_survivor_graph_split_in_two():
    setup = _setup(6, graph="sparse", neighbours=2)
    roster = [f"c{i}" for i in range(6)]
    ring = _ring_order(roster, setup)
    assert secagg._connected(ring[:3], roster, setup, bytes(32))
    assert not secagg._connected([ring[0], ring[1], ring[3], ring[4]], roster, setup, bytes(32))


def _ring_order(roster: list[str], setup: secagg._Setup) -> list[str]:
    """The clients in the order of the k=2 ring (each is the neighbour of the next)."""
    order = [roster[0]]
    while len(order) < len(roster):
        order.append(next(v for v in secagg._neighbours(order[-1], roster, setup, bytes(32)) if v not in order))
    return order


def test_a_client_refuses_to_reveal_both_secrets_of_one_client():
    client = secagg._Client(SimpleNamespace(party="c0"), _setup(5), "server")
    held = {c: (1, 2) for c in CLIENTS}
    with pytest.raises(ValueError, match="both secrets of \\['c3'\\]"):
        client._reveal({"survivors": ["c0", "c1", "c3"], "dropped": ["c3"]}, held, CLIENTS, CLIENTS, bytes(32))
    shares = client._reveal({"survivors": ["c0", "c1", "c2"], "dropped": ["c3"]}, held, CLIENTS, CLIENTS, bytes(32))
    assert shares == {"b": {"c0": 1, "c1": 1, "c2": 1}, "s": {"c3": 2}}


@pytest.mark.parametrize(("options", "match"), [
    ({"ring_bits": 32, "clip": 1e5}, "does not fit a signed 32-bit ring"),
    ({"threshold": 6}, "threshold must be between 2 and the 5 holders"),
    ({"threshold": 4, "graph": "sparse", "neighbours": 2}, "threshold must be between 2 and the 3 holders"),
    ({"graph": "sparse", "neighbours": 3}, "even number"),
    ({"ring_bits": 48}, "ring_bits must be 32 or 64"),
])
def test_bad_parameters_are_refused_with_the_fix(options, match):
    with pytest.raises(ValueError, match=match):
        _setup(5, **options)


def test_non_finite_input_names_the_client():
    xs = _inputs(CLIENTS[:3], size=4)
    xs["c1"][2] = np.nan
    with pytest.raises(SimulationError, match="client 'c1': its vector holds NaN"):
        _run(xs, threshold=2)


def test_shamir_any_threshold_shares_rebuild_and_fewer_do_not():
    secret = bytes(range(32))
    shares = shamir.split_bytes(secret, 3, [1, 2, 3, 4, 5])
    for subset in ([1, 2, 3], [5, 3, 1], [2, 4, 5, 1]):
        assert shamir.combine_bytes({x: shares[x] for x in subset}, 3, 32) == secret
    assert shamir.combine({1: shares[1], 2: shares[2]}, 2) != int.from_bytes(secret, "big")
    with pytest.raises(ValueError, match="need 3 shares"):
        shamir.combine({1: shares[1], 2: shares[2]}, 3)
    with pytest.raises(ValueError, match="nonzero"):
        shamir.split(5, 2, [0, 1])


@pytest.mark.parametrize("clip, frac_bits", [(1.0, 16), (0.1, 20), (3.7, 12)])
def test_float32_updates_encode_exactly_as_clipping_in_float64_then_rounding(clip, frac_bits):
    x = np.random.default_rng(7).normal(scale=2 * clip, size=20_000).astype(np.float32)
    x[:4] = [clip, -clip, np.float32(clip) * 1.5, 0.5 / 2**frac_bits]  # the bound, beyond it, a rounding tie
    setup = SimpleNamespace(clip=clip, frac_bits=frac_bits, signed=np.int32, dtype=np.uint32)
    reference = np.rint(np.clip(x.astype(np.float64), -clip, clip) * 2.0**frac_bits).astype(np.int32)
    assert np.array_equal(secagg._encode(x, setup, "c1").view(np.int32), reference)
