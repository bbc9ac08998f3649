"""Oblivious transfer: base OT, IKNP extension, chosen-message OT, AND triples, and what crosses the wire."""

from __future__ import annotations

import secrets

import numpy as np
import pytest

from sharedml.mpc.ot import OTExtension, and_triples, base_ot_receive, base_ot_send, gilboa_receive, gilboa_send
from sharedml.runtime.simulate import SimulationError, simulate

PARTIES = ["alice", "bob"]


def _random_choices(n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(secrets.token_bytes(-(-n // 8)), dtype=np.uint8))[:n].astype(bool)


def _assert_chosen(got: np.ndarray, x0: np.ndarray, x1: np.ndarray, choices: np.ndarray) -> None:
    np.testing.assert_array_equal(got, np.where(choices[:, None], x1, x0))
    assert (x0 != x1).any(axis=1).all()  # the unchosen message is a different string


def test_base_ot_gives_receiver_exactly_the_chosen_keys():
    choices = _random_choices(128)

    def run(ctx):
        if ctx.party == "alice":
            return base_ot_send(ctx, "bob", 128, "base")
        return base_ot_receive(ctx, "alice", choices, "base")

    results = simulate(run, PARTIES)
    k0, k1 = results["alice"]
    assert k0.shape == k1.shape == (128, 16) and k0.dtype == np.uint8
    _assert_chosen(results["bob"], k0, k1, choices)


@pytest.mark.parametrize("bad_point", [bytes(32), b"\xff" * 32, b"short"])
def test_base_ot_rejects_invalid_points(bad_point):
    def run(ctx):
        if ctx.party == "alice":
            ctx.send("bob", "base/A", bad_point)
            return None
        return base_ot_receive(ctx, "alice", np.zeros(4, dtype=bool), "base")

    with pytest.raises(SimulationError) as failure:
        simulate(run, PARTIES)
    assert isinstance(failure.value.errors["bob"], ValueError)
    assert "invalid point A" in str(failure.value.errors["bob"])


def test_base_ot_sender_rejects_b_equal_to_a():
    def run(ctx):
        if ctx.party == "alice":
            return base_ot_send(ctx, "bob", 2, "base")
        a_point = ctx.recv("alice", "base/A")
        ctx.send("alice", "base/B", np.frombuffer(a_point * 2, dtype=np.uint8).reshape(2, 32))
        return None

    with pytest.raises(SimulationError) as failure:
        simulate(run, PARTIES)
    assert "B_0 = A" in str(failure.value.errors["alice"])


def test_iknp_random_ot_both_directions_reuses_base_ots():
    sizes = (1000, 5, 70_001)  # not multiples of 8, one under a byte, one spanning two chunks
    choices = {size: _random_choices(size) for size in sizes}
    tags = []

    def run(ctx):
        ot = OTExtension(ctx, ctx.peers[0])
        out = {}
        for size in sizes:  # alice sends, then bob sends: both directions on one object
            for sender in PARTIES:
                if ctx.party == sender:
                    out[size, sender] = ot.random_send(size)
                else:
                    out[size, sender] = ot.random_receive(choices[size])
        return out

    results = simulate(run, PARTIES, recorder=lambda record: tags.append(record.key.tag))
    for size in sizes:
        for sender, receiver in (PARTIES, PARTIES[::-1]):
            x0, x1 = results[sender][size, sender]
            assert x0.shape == (size, 16)
            _assert_chosen(results[receiver][size, sender], x0, x1, choices[size])
    assert sum("/base/" in tag for tag in tags) == 4  # one A and one B message per direction, for all extensions


@pytest.mark.parametrize("length", [16, 5, 40])
def test_chosen_message_ot(length):
    m = 300
    messages = np.frombuffer(secrets.token_bytes(2 * m * length), dtype=np.uint8).reshape(2, m, length)
    choices = _random_choices(m)

    def run(ctx):
        ot = OTExtension(ctx, ctx.peers[0])
        if ctx.party == "alice":
            return ot.send(messages[0], messages[1])
        return ot.receive(choices, nbytes=length)

    got = simulate(run, PARTIES)["bob"]
    _assert_chosen(got, messages[0], messages[1], choices)


def test_and_triples_satisfy_the_identity():
    def run(ctx):
        ot = OTExtension(ctx, ctx.peers[0])
        return [and_triples(ctx, ctx.peers[0], words, ot=ot) for words in (1, 257)]

    results = simulate(run, PARTIES)
    for (a0, b0, c0), (a1, b1, c1) in zip(results["alice"], results["bob"], strict=True):
        assert a0.dtype == np.uint64 and a0.shape == b0.shape == c0.shape
        np.testing.assert_array_equal((a0 ^ a1) & (b0 ^ b1), c0 ^ c1)
    a0, b0, _ = results["alice"][1]
    ones = np.unpackbits(np.concatenate([a0, b0]).view(np.uint8)).mean()
    assert 0.45 < ones < 0.55  # shares look uniformly random, not constant


def test_wire_carries_neither_choices_nor_unchosen_messages():
    m = 512
    messages = np.frombuffer(secrets.token_bytes(2 * m * 16), dtype=np.uint8).reshape(2, m, 16)
    choices = _random_choices(m)
    payloads = []

    def run(ctx):
        ot = OTExtension(ctx, ctx.peers[0])
        if ctx.party == "alice":
            return ot.send(messages[0], messages[1])
        return ot.receive(choices)

    got = simulate(run, PARTIES, recorder=lambda r: payloads.append(r.payload))["bob"]
    _assert_chosen(got, messages[0], messages[1], choices)
    wire = b"".join(payloads)
    for encoding in (np.packbits(choices), np.packbits(choices, bitorder="little"), choices.view(np.uint8)):
        assert encoding.tobytes() not in wire
    unchosen = np.where(choices[:, None], messages[0], messages[1])
    assert not any(row.tobytes() in wire for row in np.concatenate([unchosen, got]))


@pytest.mark.parametrize("nbytes", [8, 3])
def test_correlated_ot_gives_the_receiver_the_senders_value_plus_choice_times_correlation(nbytes):
    m, length = 300, 5
    correlation = np.frombuffer(secrets.token_bytes(8 * m * length), dtype=np.uint64).reshape(m, length)
    choices = _random_choices(m)

    def run(ctx):
        ot = OTExtension(ctx, ctx.peers[0])
        if ctx.party == "alice":
            return ot.correlated_send(correlation, nbytes)
        return ot.correlated_receive(choices, length, nbytes)

    payloads = []
    results = simulate(run, PARTIES, recorder=lambda r: payloads.append(r.payload))
    low = np.uint64((1 << (8 * nbytes)) - 1)  # only the low nbytes are meaningful
    expected = results["alice"] + choices[:, None].astype(np.uint64) * correlation
    np.testing.assert_array_equal(results["bob"] & low, expected & low)
    wire = b"".join(payloads)  # the correction masks the correlation: none of its values crosses
    width = max(nbytes, 6)  # (shorter random strings could turn up in the wire by chance)
    assert not any(value.tobytes()[:width] in wire for value in correlation[:50].ravel())


def test_gilboa_product_shares_the_product_of_the_two_parties_values():
    p, length = 200, 3
    x = np.frombuffer(secrets.token_bytes(8 * p), dtype=np.uint64)
    y = np.frombuffer(secrets.token_bytes(8 * p * length), dtype=np.uint64).reshape(p, length)

    def run(ctx):
        ot = OTExtension(ctx, ctx.peers[0])
        return gilboa_receive(ot, x, length) if ctx.party == "alice" else gilboa_send(ot, y)

    results = simulate(run, PARTIES)
    np.testing.assert_array_equal(results["alice"] + results["bob"], x[:, None] * y)
