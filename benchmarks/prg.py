"""PRG benchmark: expanding a 32-byte seed into uint64 ring elements with `SeededStream` (ChaCha20),
beside numpy's PCG64 (fast, not cryptographic; for orientation) and os.urandom, in the same run.

    python benchmarks/prg.py [--n 10000000] [--repeats 5]

Prints the best-of-repeats time and MB/s for n uint64 values from each source, then rates of the
derived samplers (rejection sampling below a bound, 128-bit ring elements, DP noise). Bar (issue 4):
10^7 uint64 in well under a second.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np

from sharedml.crypto import dp
from sharedml.crypto.prg import SeededStream


def best_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000, help="uint64 values per run")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    n, repeats = args.n, args.repeats
    stream = SeededStream(os.urandom(32), domain=b"benchmark")
    pcg = np.random.Generator(np.random.PCG64(int.from_bytes(os.urandom(16), "little")))
    u64_max = np.iinfo(np.uint64).max

    sources: dict[str, Callable[[], object]] = {
        "SeededStream.uint64 (ChaCha20)": lambda: stream.uint64(n),
        "numpy PCG64 integers (not a CSPRNG)": lambda: pcg.integers(0, u64_max, size=n, dtype=np.uint64, endpoint=True),
        "os.urandom + frombuffer": lambda: np.frombuffer(os.urandom(8 * n), dtype=np.uint64),
    }
    print(f"{n:,} uint64 values ({8 * n / 1e6:.0f} MB), best of {repeats}:")
    for name, fn in sources.items():
        seconds = best_time(fn, repeats)
        print(f"  {name:<38} {seconds * 1e3:8.1f} ms  {8 * n / seconds / 1e6:8.0f} MB/s")

    m = max(n // 50, 1)
    derived: dict[str, tuple[int, Callable[[], object]]] = {
        "integers_below(10^9 + 7)": (n, lambda: stream.integers_below(n, 10**9 + 7)),
        "ring(bits=128), Python ints": (m, lambda: stream.ring(m, 128)),
        "dp.gaussian_noise": (n, lambda: dp.gaussian_noise(n, 1.0, stream)),
        "dp.laplace_noise": (n, lambda: dp.laplace_noise(n, 1.0, stream)),
        "dp.discrete_gaussian(sigma=10)": (m, lambda: dp.discrete_gaussian(m, 10.0, stream)),
    }
    print("derived samplers, best of", repeats)
    for name, (count, fn) in derived.items():
        seconds = best_time(fn, repeats)
        print(f"  {name:<38} {count:>12,} in {seconds * 1e3:8.1f} ms  {count / seconds / 1e6:8.2f} M/s")


if __name__ == "__main__":
    main()
