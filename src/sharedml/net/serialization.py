"""Safe, zero-copy serialization of messages exchanged between mutually-distrusting parties.

Peers of a secure computation do not trust each other, so decoding must never run code or build arbitrary
types: this module uses msgpack (never pickle), accepts only a fixed set of plain types, and checks every
length, index, dtype, shape and nesting level before allocating anything.  Large numpy arrays travel
out-of-band as raw buffers, so encoding does not copy them and decoding returns views into the input.

Wire format (all integers little-endian)::

    b"SML" | version u8 | header length u32 | header | pad | buffer 0 | pad | buffer 1 | ...

The header is two consecutive msgpack objects: the list of buffer byte lengths, then the message body.
Each buffer starts at an offset (from the start of the message) that is a multiple of 16, padded with
zeros; nothing may follow the last buffer.  msgpack ext types in the body encode:

* 1 big int: signed little-endian two's-complement bytes (ints outside int64/uint64)
* 2 tuple marker (empty payload): a msgpack array whose first item is this marker is a tuple of the rest
* 3 numeric ndarray: msgpack ``[buffer index, dtype str, shape]``; the buffer holds the C-order data
* 4 object ndarray of Python ints: msgpack ``[buffer index, width, shape]``; the buffer holds each int as
  ``width`` bytes of signed little-endian two's complement, in C order
* 5 numpy scalar: msgpack ``[dtype str, raw bytes]``

``dumps`` keeps references to the arrays it encodes: do not modify them until the segments are sent.
Arrays returned by ``loads`` keep the whole input buffer alive.

Decoding costs time and memory linear in the input, and bounded: a message may hold at most ``max_items``
decoded values (container slots and the elements of int arrays, which cost a Python object each, unlike
numeric arrays that stay views) and ``max_map_keys`` map keys.  Map keys must be str, bytes or integers
within 64 bits: str and bytes hash with a per-process random key and a 64-bit int shares its hash with at
most a dozen others, whereas big ints, floats or tuples can be chosen to share one hash, which made building
a 1 MB map take 38 s (issue 22).  Maps are checked before they are built, so such a map is refused in
milliseconds.
"""

from __future__ import annotations

import itertools
import math
import struct
from typing import Any

import msgpack
import numpy as np

__all__ = ["MAX_ITEMS", "MAX_MAP_KEYS", "SerializationError", "dumps", "dumps_bytes", "encoded_size", "loads"]

_MAGIC = b"SML"
_VERSION = 1
_PREFIX = struct.Struct("<3sBI")
_ALIGN = 16
_ZEROS = memoryview(bytes(_ALIGN))

_EXT_BIGINT, _EXT_TUPLE, _EXT_NDARRAY, _EXT_INTARRAY, _EXT_SCALAR = 1, 2, 3, 4, 5
_TUPLE_MARKER_EXT = msgpack.ExtType(_EXT_TUPLE, b"")
_NUMERIC_KINDS = "biufc"
_MAX_NDIM = 64
_MAX_ELEMENTS = 2**62
MAX_ITEMS = 1 << 22  # decoded values per message: about 4 million, a few hundred MB of Python objects at most
MAX_MAP_KEYS = 1 << 20  # map keys per message
_KEY_MIN, _KEY_MAX = -(2**63), 2**64 - 1  # the ints msgpack encodes natively
_CONTAINERS = (list, tuple, dict)
_LEAVES = (type(None), bool, int, float, str, bytes, np.ndarray)
_SUPPORTED = (
    "None, bool, int, float, str, bytes, list, tuple, dict, numeric numpy arrays and scalars, "
    "numpy object arrays of Python ints"
)


class SerializationError(ValueError):
    """An object cannot be encoded, or received bytes are malformed or hostile."""


def _type_name(obj: object) -> str:
    cls = type(obj)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _signed_width(value: int) -> int:
    """Bytes needed to hold ``value`` in two's complement."""
    return value.bit_length() // 8 + 1


class _Encoder:
    """Packs one message, collecting array data as out-of-band buffers."""

    def __init__(self) -> None:
        self.buffers: list[memoryview] = []

    def pack(self, obj: object) -> bytes:
        return msgpack.packb(obj, default=self._default, strict_types=True, use_bin_type=True)

    def _default(self, obj: Any) -> msgpack.ExtType | list[Any]:
        cls = type(obj)
        if cls is int:  # only called for ints that overflow 64 bits
            return msgpack.ExtType(_EXT_BIGINT, obj.to_bytes(_signed_width(obj), "little", signed=True))
        if cls is tuple:  # no nested packb: decoding then needs no recursion
            return [_TUPLE_MARKER_EXT, *obj]
        if cls is np.ndarray:
            return self._array(obj)
        if isinstance(obj, np.generic) and obj.dtype.kind in _NUMERIC_KINDS:
            return msgpack.ExtType(_EXT_SCALAR, msgpack.packb([obj.dtype.str, obj.tobytes()]))
        raise SerializationError(
            f"cannot serialize object of type {_type_name(obj)}; supported: {_SUPPORTED}"
        )

    def _add_buffer(self, buf: memoryview) -> int:
        self.buffers.append(buf)
        return len(self.buffers) - 1

    def _array(self, arr: np.ndarray) -> msgpack.ExtType:
        shape = list(arr.shape)
        if arr.dtype.kind in _NUMERIC_KINDS:
            flat = np.ascontiguousarray(arr).reshape(-1)  # a view unless arr is not C-contiguous
            index = self._add_buffer(memoryview(flat.view(np.uint8)))
            return msgpack.ExtType(_EXT_NDARRAY, msgpack.packb([index, arr.dtype.str, shape]))
        if arr.dtype.kind != "O":
            raise SerializationError(
                f"cannot serialize numpy array of dtype {arr.dtype}; supported: {_SUPPORTED}"
            )
        items = arr.ravel().tolist()
        for item in items:
            if type(item) is not int:
                raise SerializationError(
                    f"cannot serialize object array element of type {_type_name(item)}; "
                    "object arrays may only hold Python ints"
                )
        width = max((x.bit_length() for x in items), default=0) // 8 + 1
        data = b"".join([x.to_bytes(width, "little", signed=True) for x in items])
        index = self._add_buffer(memoryview(data))
        return msgpack.ExtType(_EXT_INTARRAY, msgpack.packb([index, width, shape]))


def dumps(obj: object) -> list[memoryview]:
    """Encode ``obj`` into segments whose concatenation is the wire form; the first one is the header.

    C-contiguous numpy array data is not copied: its segment is a memoryview of the array itself.
    """
    encoder = _Encoder()
    try:
        body = encoder.pack(obj)
        table = msgpack.packb([buf.nbytes for buf in encoder.buffers])
    except SerializationError:
        raise
    except Exception as exc:  # recursion limits, unencodable str, non-contiguous memoryview, ...
        raise SerializationError(f"cannot serialize object of type {_type_name(obj)}: {exc}") from exc
    head = _PREFIX.pack(_MAGIC, _VERSION, len(table) + len(body)) + table + body
    segments = [memoryview(head)]
    offset = len(head)
    for buf in encoder.buffers:
        pad = -offset % _ALIGN
        if pad:
            segments.append(_ZEROS[:pad])
        segments.append(buf)
        offset += pad + buf.nbytes
    return segments


def dumps_bytes(obj: object) -> bytes:
    """Encode ``obj`` into a single bytes object."""
    return b"".join(dumps(obj))


def encoded_size(segments: list[memoryview]) -> int:
    """Total number of bytes in ``segments``."""
    return sum(seg.nbytes for seg in segments)


def _limits(size: int) -> dict[str, int]:
    """msgpack limits so that nothing in a ``size``-byte input can claim more than ``size`` items."""
    return {f"max_{kind}_len": size for kind in ("str", "bin", "array", "map", "ext")}


def _fields(payload: bytes, what: str, count: int) -> list[Any]:
    """Unpack an ext payload that must be a msgpack list of ``count`` items."""
    fields = msgpack.unpackb(payload, raw=False, **_limits(len(payload)))
    if type(fields) is not list or len(fields) != count:
        raise SerializationError(f"malformed {what} descriptor")
    return fields


def _numeric_dtype(name: object) -> np.dtype:
    if type(name) is not str or len(name) > 16:
        raise SerializationError("dtype must be a short string")
    try:
        dtype = np.dtype(name)
    except Exception as exc:
        raise SerializationError(f"invalid dtype {name!r}") from exc
    if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise SerializationError(f"dtype {name!r} is not an allowed numeric dtype")
    return dtype


def _shape(value: object) -> tuple[int, ...]:
    if type(value) is not list or len(value) > _MAX_NDIM or any(type(d) is not int or d < 0 for d in value):
        raise SerializationError(f"invalid array shape {value!r}"[:200])
    if math.prod(max(d, 1) for d in value) > _MAX_ELEMENTS:
        raise SerializationError("array shape is absurdly large")
    return tuple(value)


def _check_bool(arr: np.ndarray) -> None:
    if arr.dtype.kind == "b" and arr.size and arr.view(np.uint8).max() > 1:
        raise SerializationError("bool data holds values other than 0 and 1")


class _TupleMarker:
    """Decoded tuple marker; any left outside the first slot of an array is rejected by _check_tree."""


_TUPLE_MARKER = _TupleMarker()


def _hash_safe(key: object) -> bool:
    """Whether a map key's hash is out of a sender's control (see the module docstring)."""
    cls = type(key)
    return cls is str or cls is bytes or (cls is int and _KEY_MIN <= key <= _KEY_MAX) or isinstance(key, np.integer)


class _Decoder:
    """Decodes one message; every check raises SerializationError."""

    def __init__(self, data: memoryview, max_depth: int, max_items: int, max_map_keys: int) -> None:
        self.data = data
        self.max_depth = max_depth
        self.buffers: list[memoryview] = []
        self.used: set[int] = set()
        self.items_left = max_items
        self.keys_left = max_map_keys

    def decode(self) -> object:
        if len(self.data) < _PREFIX.size:
            raise SerializationError("truncated message: no complete prefix")
        magic, version, header_len = _PREFIX.unpack_from(self.data)
        if magic != _MAGIC or version != _VERSION:
            raise SerializationError(f"bad magic/version {magic!r}/{version}")
        end = _PREFIX.size + header_len
        if end > len(self.data):
            raise SerializationError("truncated message: header length beyond data")
        unpacker = msgpack.Unpacker(
            ext_hook=self._ext_hook,
            list_hook=self._list,
            object_pairs_hook=self._map,
            raw=False,
            strict_map_key=False,
            max_buffer_size=header_len,
            max_str_len=header_len,
            max_bin_len=header_len,
            max_ext_len=header_len,
            max_array_len=min(header_len, self.items_left),
            max_map_len=min(header_len, self.keys_left),
        )
        unpacker.feed(self.data[_PREFIX.size : end])
        self._locate_buffers(unpacker.unpack(), end)
        body = unpacker.unpack()
        if unpacker.tell() != header_len:
            raise SerializationError("trailing bytes in header")
        if len(self.used) != len(self.buffers):
            raise SerializationError("message holds buffers that nothing references")
        self._check_tree(body)
        return body

    def _locate_buffers(self, lengths: object, offset: int) -> None:
        if type(lengths) is not list or any(type(n) is not int or n < 0 for n in lengths):
            raise SerializationError("malformed buffer table")
        for length in lengths:
            offset += -offset % _ALIGN
            if offset + length > len(self.data):
                raise SerializationError("truncated message: buffer extends beyond data")
            self.buffers.append(self.data[offset : offset + length])
            offset += length
        if offset != len(self.data):
            raise SerializationError(f"{len(self.data) - offset} trailing bytes after the last buffer")

    def _count(self, items: int) -> None:
        self.items_left -= items
        if self.items_left < 0:
            raise SerializationError("message holds more values than max_items; send large collections as arrays")

    def _list(self, items: list[Any]) -> list[Any] | tuple[Any, ...]:
        self._count(len(items))
        return tuple(items[1:]) if items and items[0] is _TUPLE_MARKER else items

    def _map(self, pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
        """Build a map once its keys are known to be safe to hash (msgpack hands them over unhashed)."""
        self._count(2 * len(pairs))
        self.keys_left -= len(pairs)
        if self.keys_left < 0:
            raise SerializationError("message holds more map keys than max_map_keys")
        for key, _ in pairs:
            if type(key) is not str and not _hash_safe(key):  # str first: the common case, and the fastest
                what = "int beyond 64 bits" if type(key) is int else f"type {_type_name(key)}"
                raise SerializationError(f"map key of {what} refused: keys must be str, bytes or ints within 64 bits")
        return dict(pairs)

    def _take_buffer(self, index: object) -> memoryview:
        if type(index) is not int or not 0 <= index < len(self.buffers):
            raise SerializationError(f"buffer index {index!r} out of range"[:200])
        if index in self.used:
            raise SerializationError(f"buffer {index} referenced twice")
        self.used.add(index)
        return self.buffers[index]

    def _ext_hook(self, code: int, payload: bytes) -> object:
        if code == _EXT_BIGINT:
            return int.from_bytes(payload, "little", signed=True)
        if code == _EXT_TUPLE and not payload:
            return _TUPLE_MARKER
        if code == _EXT_NDARRAY:
            return self._array(*_fields(payload, "array", 3))
        if code == _EXT_INTARRAY:
            return self._int_array(*_fields(payload, "int array", 3))
        if code == _EXT_SCALAR:
            return self._scalar(*_fields(payload, "scalar", 2))
        raise SerializationError(f"unknown or malformed ext type {code}")

    def _array(self, index: object, dtype_name: object, shape_value: object) -> np.ndarray:
        dtype, shape = _numeric_dtype(dtype_name), _shape(shape_value)
        buf = self._take_buffer(index)
        count = math.prod(shape)
        if count * dtype.itemsize != buf.nbytes:
            raise SerializationError(
                f"buffer of {buf.nbytes} bytes does not match {dtype} array of shape {shape}"
            )
        if count == 0:
            return np.empty(shape, dtype)
        arr = np.frombuffer(buf, dtype=dtype, count=count)
        if not arr.flags.aligned:
            arr = arr.copy()
        _check_bool(arr)
        return arr.reshape(shape)

    def _int_array(self, index: object, width: object, shape_value: object) -> np.ndarray:
        shape = _shape(shape_value)
        buf = self._take_buffer(index)
        count = math.prod(shape)
        if type(width) is not int or width < 1 or count * width != buf.nbytes:
            raise SerializationError(f"int array buffer of {buf.nbytes} bytes does not match shape {shape}")
        self._count(count)
        flat = np.empty(count, dtype=object)
        flat[:] = [
            int.from_bytes(buf[i : i + width], "little", signed=True) for i in range(0, buf.nbytes, width)
        ]
        return flat.reshape(shape)

    def _scalar(self, dtype_name: object, raw: object) -> np.generic:
        dtype = _numeric_dtype(dtype_name)
        if type(raw) is not bytes or len(raw) != dtype.itemsize:
            raise SerializationError(f"malformed {dtype} scalar")
        arr = np.frombuffer(raw, dtype=dtype)
        _check_bool(arr)
        return arr[0]

    def _check_tree(self, root: object) -> None:
        """Reject nesting deeper than max_depth and leaf types we never produce (e.g. msgpack Timestamp)."""
        stack: list[tuple[Any, int]] = [([root], 0)]
        while stack:
            node, depth = stack.pop()
            for child in itertools.chain(node.keys(), node.values()) if type(node) is dict else node:
                cls = type(child)
                if cls in _CONTAINERS:
                    if depth >= self.max_depth:
                        raise SerializationError(f"nesting deeper than max_depth={self.max_depth}")
                    stack.append((child, depth + 1))
                elif cls not in _LEAVES and not isinstance(child, np.generic):
                    raise SerializationError(f"unexpected decoded type {_type_name(child)}")


def loads(data: bytes | bytearray | memoryview, *, max_depth: int = 64, max_items: int = MAX_ITEMS,
          max_map_keys: int = MAX_MAP_KEYS) -> object:
    """Decode a message produced by :func:`dumps`.

    Numeric arrays are views into ``data`` when aligned (read-only if ``data`` is immutable), else copies.
    Any malformed or hostile input, or one beyond the bounds (see the module docstring), raises
    :class:`SerializationError`.
    """
    try:
        view = memoryview(data).cast("B")
    except (TypeError, ValueError) as exc:
        raise SerializationError(
            f"loads expects a contiguous bytes-like object, got {_type_name(data)}"
        ) from exc
    try:
        return _Decoder(view, max_depth, max_items, max_map_keys).decode()
    except SerializationError:
        raise
    except Exception as exc:  # any msgpack/numpy/unicode failure on hostile input
        raise SerializationError(f"malformed message: {type(exc).__name__}: {exc}"[:500]) from exc
