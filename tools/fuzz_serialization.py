"""Coverage-guided fuzzing of the message decoder, `sharedml.net.serialization.loads`, with atheris.

CI runs a short structured fuzz (tests/test_serialization.py, hypothesis, a few seconds); this harness is for
long campaigns. It needs atheris, which is not a dependency of the package:

    pip install atheris
    python tools/fuzz_serialization.py --seeds corpus/     # write a few valid messages to start from
    python tools/fuzz_serialization.py corpus/ -max_total_time=3600 -rss_limit_mb=4096

Arguments after the corpus folder are libFuzzer's. An input fails the campaign if `loads` raises anything but
SerializationError, returns a map whose keys an attacker could make collide, or takes longer than
SLOW_SECONDS (decoding must stay linear in the input: issue 22).
"""

from __future__ import annotations

import struct
import sys
import time
from pathlib import Path

import atheris
import numpy as np

with atheris.instrument_imports():
    from sharedml.net.serialization import SerializationError, dumps_bytes, loads

SLOW_SECONDS = 1.0
_PREFIX = struct.Struct("<3sBI")
_SEEDS = {
    "scalars": [None, True, -1, 2**64 - 1, 2**300, 1.5, "text", b"bytes", ()],
    "mapping": {"w": 1, -(2**63): [1, (2, 3)], b"k": {"nested": None}},
    "arrays": [np.arange(6.0).reshape(2, 3), np.array([2**2048 + 1, -5], dtype=object), np.float32(2.5)],
}


def _framed(data: bytes) -> bytes:
    """`data` as the header of a message, so that mutations reach the msgpack decoding past the prefix check."""
    return _PREFIX.pack(b"SML", 1, len(data)) + data


def _safe_keys(obj: object) -> bool:
    stack = [obj]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key in node:
                if isinstance(key, str | bytes):
                    continue
                if not isinstance(key, int | np.integer) or isinstance(key, bool) or not -(2**63) <= key < 2**64:
                    return False
            stack.extend(node.values())
        elif isinstance(node, list | tuple):
            stack.extend(node)
    return True


def test_one_input(data: bytes) -> None:
    """Odd first byte: the rest is a whole message; even: the rest is a header behind a valid prefix."""
    if not data:
        return
    message = data[1:] if data[0] & 1 else _framed(data[1:])
    start = time.perf_counter()
    try:
        decoded = loads(message)
    except SerializationError:
        decoded = None
    elapsed = time.perf_counter() - start
    if elapsed > SLOW_SECONDS:
        raise AssertionError(f"decoding {len(message)} bytes took {elapsed:.2f} s")
    if not _safe_keys(decoded):
        raise AssertionError("decoded a map whose keys are not str, bytes or 64-bit ints")


def write_seeds(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, obj in _SEEDS.items():
        (folder / name).write_bytes(b"\x01" + dumps_bytes(obj))


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--seeds":
        write_seeds(Path(sys.argv[2]))
        return
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
