"""The Channel API over the in-memory transport: keying, sequencing, timeouts, aborts, accounting."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from sharedml.net.channel import Channel, MessageKey, UnreadBounds
from sharedml.net.errors import JobAborted, JobCancelled, MessageTooLarge, PeerFlooding, PeerTimeout, TransportError
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


# ----------------------------------------------------------------------- bounds (issue 22, rows 4 and 7)

def test_a_message_over_max_message_bytes_fails_at_the_sender():
    hub = MemoryHub(max_message_bytes=10_000)
    ch, _ = channels(["a", "b"], hub=hub)
    ch["a"].send("b", "ok", np.zeros(1000))
    with pytest.raises(MessageTooLarge, match=r"'big' from party 'a' to party 'b'.*max_message_bytes \(10000\)"):
        ch["a"].send("b", "big", np.zeros(2000))
    assert ch["b"].recv("a", "ok").size == 1000


def test_unread_messages_per_peer_are_bounded_in_count_and_bytes():
    hub = MemoryHub(unread=UnreadBounds(bytes_per_peer=10_000, bytes_per_job=100_000, messages_per_peer=5))
    ch, _ = channels(["a", "b", "c"], hub=hub)
    for i in range(5):
        ch["a"].send("b", "x", i)
    with pytest.raises(PeerFlooding, match=r"party 'b' refused message 'x'.*party 'a' already has 5 messages.*"
                                           "must receive before it sends more"):
        ch["a"].send("b", "x", 5)
    ch["c"].send("b", "x", np.zeros(1000))  # another peer has its own bound...
    with pytest.raises(PeerFlooding, match="party 'c' already has 1 messages.*raise max_message_bytes"):
        ch["c"].send("b", "y", np.zeros(1000))  # ...in bytes too
    assert [ch["b"].recv("a", "x") for _ in range(5)] == [0, 1, 2, 3, 4]  # what was kept is still delivered
    start = time.monotonic()
    with pytest.raises(PeerFlooding, match="from party 'a'"):  # then the refused one fails at once, naming 'a'
        ch["b"].recv("a", "x", timeout=5)
    assert time.monotonic() - start < 1
    assert ch["b"].recv("c", "x").size == 1000


def test_unread_messages_per_job_are_bounded_over_all_peers():
    hub = MemoryHub(unread=UnreadBounds(bytes_per_peer=100_000, bytes_per_job=100_000, messages_per_job=3))
    ch, _ = channels(["a", "b", "c", "d"], hub=hub)
    ch["a"].send("d", "x", 1)
    ch["b"].send("d", "x", 2)
    ch["c"].send("d", "x", 3)
    with pytest.raises(PeerFlooding, match="from party 'a'.*job job already has 3 messages"):
        ch["a"].send("d", "y", 4)
    Channel(ch["a"].transport, "job2", "task", ["a", "d"]).send("d", "x", 5)  # another job has its own bound


def test_received_retried_and_forgotten_messages_leave_the_unread_count():
    hub = MemoryHub(unread=UnreadBounds(bytes_per_peer=10_000, bytes_per_job=10_000, messages_per_peer=2))
    ch, transports = channels(["a", "b"], hub=hub)
    mailbox = transports["b"].mailbox
    key = MessageKey("job", "task", "a", "x", 0)
    mailbox.put(key, b"12345")
    mailbox.put(key, b"12345")  # a retried delivery: dropped, and not counted twice
    assert mailbox._held["peer", "a"] == 1 and mailbox._held_bytes["peer", "a"] == 5
    assert mailbox.get(key, 1) == b"12345"
    assert not mailbox._held and not mailbox._held_bytes
    mailbox.put(key, b"12345")
    mailbox.forget_job("job")
    assert not mailbox._held and not mailbox._held_bytes
    for _ in range(3):
        for i in range(2):
            ch["a"].send("b", f"z{i}", i)
        assert [ch["b"].recv("a", f"z{i}") for i in range(2)] == [0, 1]  # received: room again
