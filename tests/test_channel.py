"""The Channel API over the in-memory transport: keying, sequencing, timeouts, aborts, accounting."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from sharedml.net.channel import Channel
from sharedml.net.errors import JobAborted, JobCancelled, PeerTimeout, TransportError
from sharedml.net.memory import MemoryHub


def channels(parties, job="job", task="task", timeout=5.0, hub=None):
    hub = hub or MemoryHub()
    transports = {p: hub.transport(p) for p in parties}
    return {p: Channel(transports[p], job, task, parties, timeout) for p in parties}, transports


def test_send_recv_round_trip_of_arrays_and_structures():
    ch, _ = channels(["a", "b"])
    payload = {"w": np.arange(12.0).reshape(3, 4), "n": 2**300, "ids": ["x", "y"]}
    ch["a"].send("b", "model", payload)
    got = ch["b"].recv("a", "model")
    assert np.array_equal(got["w"], payload["w"]) and got["n"] == 2**300 and got["ids"] == ["x", "y"]


def test_repeated_tag_is_received_in_send_order():
    ch, _ = channels(["a", "b"])
    for i in range(5):
        ch["a"].send("b", "step", i)
    assert [ch["b"].recv("a", "step") for _ in range(5)] == [0, 1, 2, 3, 4]


def test_concurrent_tasks_of_one_job_never_mix():
    hub = MemoryHub()
    ta, tb = hub.transport("a"), hub.transport("b")
    a1, a2 = Channel(ta, "j", "t1", ["a", "b"]), Channel(ta, "j", "t2", ["a", "b"])
    b1, b2 = Channel(tb, "j", "t1", ["a", "b"]), Channel(tb, "j", "t2", ["a", "b"])
    a2.send("b", "x", "from t2")
    a1.send("b", "x", "from t1")
    assert b1.recv("a", "x") == "from t1"
    assert b2.recv("a", "x") == "from t2"


def test_broadcast_and_gather():
    ch, _ = channels(["a", "b", "c"])
    ch["a"].broadcast("hello", "hi from a")
    ch["b"].send("a", "reply", 2)
    ch["c"].send("a", "reply", 3)
    assert ch["b"].recv("a", "hello") == "hi from a" and ch["c"].recv("a", "hello") == "hi from a"
    assert ch["a"].gather("reply") == {"b": 2, "c": 3}


def test_recv_timeout_names_peer_and_tag():
    ch, _ = channels(["a", "b"])
    start = time.monotonic()
    with pytest.raises(PeerTimeout, match=r"'weights'.*party 'b'.*0.2 s"):
        ch["a"].recv("b", "weights", timeout=0.2)
    assert time.monotonic() - start < 2


def test_abort_wakes_a_waiting_recv_with_the_failing_partys_reason():
    ch, transports = channels(["a", "b"], timeout=30)
    errors = []

    def wait():
        try:
            ch["a"].recv("b", "never")
        except JobAborted as err:
            errors.append(err)

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.05)
    transports["b"].abort_job("job", "ValueError: boom", ["a"])
    thread.join(5)
    assert not thread.is_alive()
    assert errors and errors[0].party == "b" and "boom" in str(errors[0])


def test_cancel_wakes_a_waiting_recv():
    ch, transports = channels(["a", "b"], timeout=30)
    threading.Timer(0.05, transports["a"].cancel_job, args=("job",)).start()
    with pytest.raises(JobCancelled):
        ch["a"].recv("b", "never")


def test_unknown_peer_is_a_clear_error():
    ch, _ = channels(["a", "b"])
    with pytest.raises(ValueError, match="'z' is not a peer"):
        ch["a"].send("z", "x", 1)


def test_bytes_are_counted_per_peer_on_both_sides():
    ch, transports = channels(["a", "b", "c"])
    ch["a"].send("b", "x", np.zeros(1000))
    ch["b"].recv("a", "x")
    sent = ch["a"].stats.snapshot()
    assert sent["b"]["bytes_sent"] > 8000 and "c" not in sent
    assert ch["b"].stats.snapshot()["a"]["bytes_recv"] == sent["b"]["bytes_sent"]
    assert transports["a"].stats.snapshot()["b"]["msgs_sent"] == 1


def test_garbage_from_a_peer_is_a_clear_error_not_a_crash():
    ch, transports = channels(["a", "b"])
    from sharedml.net.channel import MessageKey

    transports["a"].mailbox.put(MessageKey("job", "task", "b", "x", 0), bytearray(b"\x00garbage"))
    with pytest.raises(TransportError, match="party 'b' sent a malformed message 'x'"):
        ch["a"].recv("b", "x")


def test_recorder_sees_exactly_what_crossed_the_wire():
    ch, transports = channels(["a", "b"])
    records = []
    transports["a"].recorder = records.append
    ch["a"].send("b", "x", np.array([1.5, 2.5]))
    assert len(records) == 1 and records[0].dst == "b" and records[0].key.tag == "x"
    assert np.array([1.5, 2.5]).tobytes() in records[0].payload
