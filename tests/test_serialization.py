"""Tests for sharedml.net.serialization: exact round-trips, zero-copy, and hostile-input defences."""

from __future__ import annotations

import inspect
import math
import pickle
import struct
import time

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import sharedml.net.serialization as serialization
from sharedml.net.serialization import SerializationError, dumps, dumps_bytes, encoded_size, loads

FAST = settings(max_examples=60, deadline=None)


def same(a: object, b: object) -> bool:
    """Structural equality that also checks exact types, dtypes, shapes and treats nan as equal to nan."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, np.ndarray):
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        if a.dtype == object:
            return all(same(x, y) for x, y in zip(a.ravel().tolist(), b.ravel().tolist(), strict=True))
        return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if isinstance(a, np.generic):
        return a.dtype == b.dtype and same(a.item(), b.item())
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return same(list(a.keys()), list(b.keys())) and all(same(a[k], b[k]) for k in a)
    return a == b


def roundtrip(obj: object) -> object:
    data = dumps_bytes(obj)
    assert encoded_size(dumps(obj)) == len(data)
    return loads(data)


# --------------------------------------------------------------------------------------------- round-trips

map_keys = st.text(max_size=8) | st.binary(max_size=8) | st.integers(-(2**63), 2**64 - 1)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**4096), 2**4096)
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
    | st.binary()
)
nested = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=4).map(tuple)
        | st.dictionaries(map_keys, children, max_size=4)
    ),
    max_leaves=25,
)


@FAST
@given(nested)
def test_roundtrip_nested_structures(obj: object) -> None:
    assert same(roundtrip(obj), obj)


@pytest.mark.parametrize(
    "obj",
    [
        2**63 - 1,
        -(2**63),
        2**64 - 1,
        2**64,
        -(2**63) - 1,
        -(2**4096),
        float("nan"),
        float("-inf"),
        (),
        ((),),
        [(1, [2, (3,)])],
        {-(2**63): {"k": ()}, 2**64 - 1: None, b"b": [], "s": 1.5, np.int16(-3): 0},
        {"z": 1, "a": 2, "m": 3},
    ],
)
def test_roundtrip_edge_values(obj: object) -> None:
    assert same(roundtrip(obj), obj)


def test_bytes_like_encode_as_bytes() -> None:
    assert roundtrip([bytearray(b"ab"), memoryview(b"cd")]) == [b"ab", b"cd"]


DTYPES = ["bool", "int8", "uint16", "int64", "uint64", "float32", "float64", "complex128", ">i4", ">f8"]


@FAST
@given(
    st.sampled_from(DTYPES).flatmap(
        lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
    )
)
def test_roundtrip_numeric_arrays(arr: np.ndarray) -> None:
    out = roundtrip(arr)
    assert same(out, arr)
    assert out.dtype.str == arr.dtype.str


@FAST
@given(hnp.arrays(st.sampled_from(["int16", "float64", ">u4"]), hnp.array_shapes(min_dims=2, max_dims=2)))
def test_roundtrip_non_contiguous_views(arr: np.ndarray) -> None:
    for view in (arr.T, arr[::2], arr[::-1], arr[:, ::-2], np.asfortranarray(arr)):
        out = roundtrip({"v": view})["v"]
        assert same(out, np.ascontiguousarray(view))
        assert out.shape == view.shape and out.dtype == view.dtype


def test_roundtrip_several_arrays_and_scalar_arrays() -> None:
    obj = [np.array(3.5), np.zeros((2, 0, 3), np.uint8), np.arange(7, dtype=np.int8), np.ones(3, ">c8")]
    assert same(roundtrip(obj), obj)


def test_roundtrip_object_array_of_big_ints() -> None:
    arr = np.empty((2, 3), dtype=object)
    arr[:] = [[2**3000 + 7, -(2**3000), 0], [-1, 255, -128]]
    out = roundtrip(arr)
    assert same(out, arr)
    assert all(type(x) is int for x in out.ravel())
    empty = np.empty((0, 4), dtype=object)
    assert same(roundtrip(empty), empty)


@FAST
@given(st.lists(st.integers(-(2**2100), 2**2100), max_size=20))
def test_roundtrip_object_arrays_property(values: list[int]) -> None:
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    assert same(roundtrip(arr), arr)


@pytest.mark.parametrize(
    "scalar",
    [np.float32(1.5), np.int64(3), np.bool_(True), np.uint8(255), np.complex64(1 - 2j), np.float64("nan")],
)
def test_numpy_scalars_keep_their_type(scalar: np.generic) -> None:
    out = roundtrip(scalar)
    assert type(out) is type(scalar)
    assert same(out, scalar)


# ------------------------------------------------------------------------------------------------ zero-copy


def test_dumps_does_not_copy_contiguous_arrays() -> None:
    arr = np.arange(1000, dtype=np.float64)
    segs = dumps({"x": arr})
    assert all(isinstance(s, memoryview) for s in segs)
    assert any(np.shares_memory(np.asarray(s), arr) for s in segs[1:])


def test_loads_returns_views_into_bytearray() -> None:
    arr = np.arange(1000, dtype=np.float64).reshape(10, 100)
    data = bytearray(dumps_bytes([arr]))
    out = loads(data)[0]
    assert out.base is not None
    assert np.shares_memory(out, np.frombuffer(data, dtype=np.uint8))
    assert out.flags.writeable
    assert same(out, arr)


def test_loads_from_bytes_gives_equal_read_only_or_copied_arrays() -> None:
    arr = np.arange(10, dtype=np.int32)
    out = loads(dumps_bytes(arr))
    assert same(out, arr)


def test_loads_copies_misaligned_buffers() -> None:
    arr = np.arange(100, dtype=np.float64)
    shifted = bytearray(b"\0") + dumps_bytes(arr)
    out = loads(memoryview(shifted)[1:])
    assert out.flags.aligned
    assert same(out, arr)


# -------------------------------------------------------------------------------------- unsupported values


class Custom:
    pass


@pytest.mark.parametrize(
    "obj",
    [
        {1, 2},
        object(),
        lambda: 1,
        Custom(),
        [1, {"x": frozenset()}],
        {Custom(): 1},
        np.array(["a", "b"]),
        np.array([1, "x"], dtype=object),
        np.array([1, 2.5], dtype=object),
        np.zeros(2, dtype=[("a", "i4")]),
        np.datetime64("2020-01-01"),
        np.ma.masked_array([1, 2]),
    ],
)
def test_unsupported_types_raise(obj: object) -> None:
    with pytest.raises(SerializationError):
        dumps(obj)


def test_unsupported_error_names_the_type() -> None:
    with pytest.raises(SerializationError, match="set"):
        dumps({1})
    with pytest.raises(SerializationError, match="str"):
        dumps(np.array([1, "x"], dtype=object))


def test_too_deep_to_encode_raises_serialization_error() -> None:
    obj: list = []
    for _ in range(5000):
        obj = [obj]
    with pytest.raises(SerializationError):
        dumps(obj)


# ------------------------------------------------------------------------------------------ hostile input


def message(body: object, buffers: tuple[bytes, ...] = (), *, lengths: list[int] | None = None) -> bytes:
    """Hand-build a message following the documented wire format."""
    header = msgpack.packb([len(b) for b in buffers] if lengths is None else lengths) + msgpack.packb(body)
    out = bytearray(struct.pack("<3sBI", b"SML", 1, len(header)) + header)
    for buf in buffers:
        out += bytes(-len(out) % 16) + buf
    return bytes(out)


def ndarray_ext(index: object, dtype: object, shape: object) -> msgpack.ExtType:
    return msgpack.ExtType(3, msgpack.packb([index, dtype, shape]))


def raw_message(body: bytes) -> bytes:
    """A message without buffers whose body is the given raw msgpack bytes."""
    header = msgpack.packb([]) + body
    return struct.pack("<3sBI", b"SML", 1, len(header)) + header


TUPLE_MARKER = b"\xc7\x00\x02"  # ext 2 with an empty payload


def test_hand_built_message_matches_dumps() -> None:
    arr = np.arange(3, dtype="<i4")
    assert message([ndarray_ext(0, "<i4", [3])], (arr.tobytes(),)) == dumps_bytes([arr])


def test_truncated_messages_raise() -> None:
    data = dumps_bytes({"a": np.arange(5.0), "b": (1, 2**80, "text"), "c": np.array([2**200], dtype=object)})
    for cut in range(len(data)):
        with pytest.raises(SerializationError):
            loads(data[:cut])


def test_bad_magic_or_version_raises() -> None:
    data = bytearray(dumps_bytes([1, 2]))
    for index in (0, 3):
        bad = bytearray(data)
        bad[index] ^= 0xFF
        with pytest.raises(SerializationError, match="magic"):
            loads(bad)


def test_trailing_bytes_raise() -> None:
    with pytest.raises(SerializationError, match="trailing"):
        loads(dumps_bytes(np.arange(3.0)) + b"\0")
    with pytest.raises(SerializationError, match="trailing"):
        loads(dumps_bytes([1]) + b"x")


def test_header_length_beyond_data_raises() -> None:
    data = bytearray(dumps_bytes("hello"))
    data[4:8] = struct.pack("<I", 2**32 - 1)
    with pytest.raises(SerializationError):
        loads(data)


@pytest.mark.parametrize(
    "dtype", ["O", "|O", "|V8", "<U3", "|S4", "<M8[s]", "<m8", "i4,f8", "(2,)i4", "x", 7, None]
)
def test_disallowed_dtypes_raise(dtype: object) -> None:
    with pytest.raises(SerializationError, match="dtype"):
        loads(message(ndarray_ext(0, dtype, [2]), (bytes(16),)))


@pytest.mark.parametrize(
    "shape", [[2**40, 2**40], [-1], [2**63, 0], [0] * 100, "2", [1.5], [msgpack.ExtType(1, b"\x01")]]
)
def test_bad_shapes_raise(shape: object) -> None:
    with pytest.raises(SerializationError):
        loads(message(ndarray_ext(0, "<f8", shape), (bytes(16),)))


def test_buffer_length_mismatch_raises() -> None:
    with pytest.raises(SerializationError, match="does not match"):
        loads(message(ndarray_ext(0, "<f8", [3]), (bytes(16),)))
    # The buffer table itself claims more than the data holds.
    with pytest.raises(SerializationError, match="beyond"):
        loads(message(ndarray_ext(0, "<f8", [2]), (bytes(16),), lengths=[10**9]))


@pytest.mark.parametrize("index", [1, -1, 2**64 - 1, "0"])
def test_buffer_index_out_of_range_raises(index: object) -> None:
    with pytest.raises(SerializationError, match="index"):
        loads(message(ndarray_ext(index, "<f8", [2]), (bytes(16),)))


def test_buffer_referenced_twice_or_never_raises() -> None:
    with pytest.raises(SerializationError, match="twice"):
        loads(message([ndarray_ext(0, "<f8", [2]), ndarray_ext(0, "<f8", [2])], (bytes(16),)))
    with pytest.raises(SerializationError, match="references"):
        loads(message([ndarray_ext(0, "<f8", [2])], (bytes(16), bytes(8))))


def test_int_array_with_zero_width_raises_instead_of_looping() -> None:
    ext = msgpack.ExtType(4, msgpack.packb([0, 0, [2**40, 2**20]]))
    with pytest.raises(SerializationError):
        loads(message(ext, (b"",)))


def test_invalid_bool_bytes_raise() -> None:
    with pytest.raises(SerializationError, match="bool"):
        loads(message(ndarray_ext(0, "|b1", [2]), (b"\x01\x02",)))


@pytest.mark.parametrize("code", [0, 6, 42, 127])
def test_unknown_ext_codes_raise(code: int) -> None:
    with pytest.raises(SerializationError, match="ext"):
        loads(message(msgpack.ExtType(code, b"abc")))


def test_msgpack_timestamp_is_rejected() -> None:
    with pytest.raises(SerializationError):
        loads(message(msgpack.Timestamp(1, 0)))


def test_unhashable_map_key_raises() -> None:
    header = msgpack.packb([]) + b"\x81\x91\x01\x02"  # {[1]: 2}
    with pytest.raises(SerializationError):
        loads(struct.pack("<3sBI", b"SML", 1, len(header)) + header)


def test_nesting_beyond_max_depth_raises() -> None:
    for wrap in (lambda x: [x], lambda x: (x,), lambda x: {"k": x}, lambda x: ([x],)):
        obj: object = 0
        for _ in range(70):
            obj = wrap(obj)
        data = dumps_bytes(obj)
        with pytest.raises(SerializationError, match="max_depth"):
            loads(data)
        assert same(loads(data, max_depth=140), obj)
    assert loads(dumps_bytes([[1]]), max_depth=2) == [[1]]
    with pytest.raises(SerializationError, match="max_depth"):
        loads(dumps_bytes([[1]]), max_depth=1)


def test_extremely_deep_raw_msgpack_raises() -> None:
    header = msgpack.packb([]) + b"\x91" * 100_000 + b"\xc0"
    with pytest.raises(SerializationError):
        loads(struct.pack("<3sBI", b"SML", 1, len(header)) + header)


@pytest.mark.parametrize(
    "body",
    [
        TUPLE_MARKER,  # marker on its own
        b"\x92\xc0" + TUPLE_MARKER,  # marker not in the first slot
        b"\x81\xc0" + TUPLE_MARKER,  # marker as a map value
        b"\xc7\x01\x02x",  # tuple ext with a payload
    ],
)
def test_stray_tuple_markers_raise(body: bytes) -> None:
    with pytest.raises(SerializationError):
        loads(raw_message(body))


@pytest.mark.parametrize("level", [b"\x91", b"\x92" + TUPLE_MARKER, b"\x81\xc0"])
def test_hostile_deep_nesting_fails_cleanly_even_with_huge_max_depth(level: bytes) -> None:
    # Must neither overflow the C stack nor recurse in Python, whatever max_depth the caller allows.
    with pytest.raises(SerializationError):
        loads(raw_message(level * 200_000 + b"\xc0"), max_depth=10**9)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_garbage_only_raises_serialization_error(data: bytes) -> None:
    try:
        loads(data)
    except SerializationError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_after_valid_prefix_only_raises_serialization_error(payload: bytes) -> None:
    try:
        loads(struct.pack("<3sBI", b"SML", 1, len(payload)) + payload)
    except SerializationError:
        pass


@FAST
@given(nested, st.data())
def test_corrupted_valid_messages_only_raise_serialization_error(obj: object, data: st.DataObject) -> None:
    encoded = bytearray(dumps_bytes([obj, np.arange(3.0)]))
    position = data.draw(st.integers(0, len(encoded) - 1))
    encoded[position] = data.draw(st.integers(0, 255))
    try:
        loads(encoded)
    except SerializationError:
        pass


@pytest.mark.parametrize("data", ["text", 12, None, np.zeros((2, 2))[:, 0]])
def test_non_bytes_input_raises(data: object) -> None:
    with pytest.raises(SerializationError):
        loads(data)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ security


def test_pickle_is_never_used() -> None:
    assert "pickle" not in serialization.__dict__
    source = inspect.getsource(serialization)
    for forbidden in ("import pickle", "from pickle", "marshal", "eval(", "exec(", "__import__"):
        assert forbidden not in source
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(SerializationError):
            loads(pickle.dumps({"x": [1, 2]}, protocol=protocol))


# --------------------------------------------------------------------------------------- bounds (issue 22)

HASH_MODULUS = 2**61 - 1  # hash(n) == n % HASH_MODULUS for a non-negative int n


def bigint_ext(value: int) -> bytes:
    return msgpack.packb(msgpack.ExtType(1, value.to_bytes(value.bit_length() // 8 + 1, "little", signed=True)))


def raw_map(pairs: list[tuple[bytes, bytes]]) -> bytes:
    return b"\xdf" + struct.pack(">I", len(pairs)) + b"".join(k + v for k, v in pairs)


def raw_array(items: list[bytes]) -> bytes:
    return b"\xdd" + struct.pack(">I", len(items)) + b"".join(items)


@pytest.mark.parametrize("key", [(1, 2), None, True, 1.5, 2**64, -(2**63) - 1, np.float64(2.0), np.bool_(True)])
def test_map_keys_other_than_str_bytes_and_64_bit_ints_are_refused(key: object) -> None:
    data = dumps_bytes({"ok": 1, key: 2})  # the encoder does not check keys: the decoder must
    with pytest.raises(SerializationError, match="map key"):
        loads(data)


def test_a_map_of_colliding_big_int_keys_is_refused_in_milliseconds() -> None:
    """Issue 22 row 6: keys that all hash alike made a 1.05 MB map take 38 s to build."""
    keys = [(k + 4) * HASH_MODULUS for k in range(80_000)]
    assert {hash(k) for k in keys[:100]} == {0}
    data = raw_message(raw_map([(bigint_ext(k), b"\xc0") for k in keys]))
    assert len(data) > 1_000_000
    start = time.perf_counter()
    with pytest.raises(SerializationError, match="map key of int beyond 64 bits"):
        loads(data)
    assert time.perf_counter() - start < 0.5
    # The same number of 64-bit keys, also chosen to collide as much as they can, decode in linear time.
    keys64 = [k * HASH_MODULUS + r for r in range(8_000) for k in range(-4, 6)]
    start = time.perf_counter()
    assert len(loads(raw_message(raw_map([(msgpack.packb(k), b"\xc0") for k in keys64])))) == len(keys64)
    assert time.perf_counter() - start < 0.5


def test_values_and_map_keys_per_message_are_bounded() -> None:
    nested = [[1, 2], [3]]  # 5 values: 2 slots in the outer list, 3 in the inner ones
    assert loads(dumps_bytes(nested), max_items=5) == nested
    with pytest.raises(SerializationError, match="max_items"):
        loads(dumps_bytes(nested), max_items=4)
    mapping = {"a": 1, "b": {"c": 2}}  # 3 keys, 6 values
    assert loads(dumps_bytes(mapping), max_items=6, max_map_keys=3) == mapping
    with pytest.raises(SerializationError, match="max_map_keys"):
        loads(dumps_bytes(mapping), max_map_keys=2)
    with pytest.raises(SerializationError, match="max_items"):
        loads(dumps_bytes(mapping), max_items=5)
    # One container longer than the bound is refused from its msgpack length, before its items are built.
    with pytest.raises(SerializationError):
        loads(raw_message(b"\xdd" + struct.pack(">I", 1000) + b"\x80" * 1000), max_items=999)


def test_flood_of_empty_maps_stops_at_max_items() -> None:
    """Each one-byte empty map costs a 64-byte dict: the bound, not the message size, caps that."""
    data = raw_message(raw_array([raw_array([b"\x80"] * 1000)] * 10))
    assert len(loads(data, max_items=10_010)) == 10
    with pytest.raises(SerializationError, match="max_items"):
        loads(data, max_items=5_000)


def test_int_array_elements_count_as_values() -> None:
    arr = np.empty(1000, dtype=object)
    arr[:] = list(range(1000))
    assert same(loads(dumps_bytes(arr), max_items=1001), arr)  # and one for the buffer table's entry
    with pytest.raises(SerializationError, match="max_items"):
        loads(dumps_bytes(arr), max_items=1000)
    # 8 MB of one-byte ints would be 8 million Python ints (and 128 MB of pointers): refused before any is built.
    start = time.perf_counter()
    with pytest.raises(SerializationError, match="max_items"):
        loads(message(msgpack.ExtType(4, msgpack.packb([0, 1, [8 << 20]])), (bytes(8 << 20),)))
    assert time.perf_counter() - start < 0.5


# Short fuzz of the decoder on structured hostile input (tools/fuzz_serialization.py runs long campaigns).
P61_KEYS = st.integers(4, 64).map(lambda k: bigint_ext(k * HASH_MODULUS))
raw_leaves = (
    st.builds(msgpack.packb, st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(
        max_size=8) | st.binary(max_size=8))
    | st.integers(-(2**200), 2**200).map(bigint_ext)
    | P61_KEYS
    | st.just(TUPLE_MARKER)
    | st.builds(lambda code, payload: msgpack.packb(msgpack.ExtType(code, payload)), st.integers(0, 8),
                st.binary(max_size=16))
    | st.builds(lambda i, dtype, shape: msgpack.packb(ndarray_ext(i, dtype, shape)), st.integers(-1, 3),
                st.sampled_from(["<f8", "|b1", "<i4", "|O", "x"]), st.lists(st.integers(-1, 2**40), max_size=3))
)
raw_bodies = st.recursive(
    raw_leaves,
    lambda children: st.lists(children, max_size=6).map(raw_array)
    | st.lists(st.tuples(children, children), max_size=6).map(raw_map),
    max_leaves=40,
)


def assert_safe_keys(obj: object) -> None:
    stack = [obj]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key in node:
                assert type(key) in (str, bytes, int) or isinstance(key, np.integer), key
                assert -(2**63) <= int(key) < 2**64 if not isinstance(key, str | bytes) else True
            stack.extend(node.values())
        elif isinstance(node, list | tuple):
            stack.extend(node)


@settings(max_examples=300, deadline=None)
@given(raw_bodies, st.lists(st.binary(max_size=24), max_size=3))
def test_fuzz_structured_hostile_messages_decode_fast_or_raise(body: bytes, buffers: list[bytes]) -> None:
    header = msgpack.packb([len(b) for b in buffers]) + body
    data = bytearray(struct.pack("<3sBI", b"SML", 1, len(header)) + header)
    for buf in buffers:
        data += bytes(-len(data) % 16) + buf
    start = time.perf_counter()
    try:
        assert_safe_keys(loads(data))
    except SerializationError:
        pass
    assert time.perf_counter() - start < 0.5
