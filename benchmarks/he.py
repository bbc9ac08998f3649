"""Homomorphic encryption benchmark: our Paillier and OU beside phe (with gmpy2) and SecretFlow HEU, one run.

    python benchmarks/he.py [--n 10000] [--ref-n 1000] [--rounds 5] [--bits 2048] [--heu-threads 1]

Prints operations per second for encrypt (public key; key owner), decrypt (per ciphertext and per
packed value), ct+ct and ct×pt, for ours, phe and HEU side by side with the ratios ours/phe and
ours/HEU, then ours with 1 and 2 worker processes, bytes per ciphertext, and the bars of the issue
(PASS/FAIL). Plaintexts are random signed 63-bit integers, multipliers random signed 32-bit ones.

Like with like: ours and phe run in this process on one thread, and HEU (vectorised C++) is limited
to one thread with YACL_NUM_THREADS=1 (`--heu-threads 0` leaves HEU its default, which may use every
core); the cpu/wall columns (process CPU time over wall time) show how many cores each kept busy.
Ours runs on `--n` values, phe and HEU on `--ref-n` (phe encrypts at ~100/s: 10,000 would take
minutes). Each operation is timed in `--rounds` rounds; in every round each contender (ours with 1
process, ours with 2, phe, HEU) processes the next 1/rounds of its values, a chunk repeating until it
has run for 0.2 s, and the rate reported is the median over the rounds. Interleaving the contenders
this way keeps them under the same conditions when other work shares the machine. One-off costs
(key generation, building our fixed-base tables, starting the worker processes) are excluded and
printed separately.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import phe as phe_lib

from sharedml.crypto import parallel
from sharedml.crypto.he import Packer
from sharedml.crypto.ou import generate_keypair as ou_keypair
from sharedml.crypto.paillier import generate_keypair

MIN_SECONDS = 0.2
SERIAL = 2**62  # a parallel min_size that nothing reaches
OPS = ("enc_public", "enc_owner", "dec", "add", "mul")

Op = Callable[[slice], Any]  # performs one operation per element of the slice


@dataclass
class Rate:
    ops: float  # operations per second
    cpu: float  # process CPU seconds per wall second


@dataclass
class Contender:
    size: int  # elements its operations run over
    ops: dict[str, Op]


def timed(fn: Op, part: slice) -> Rate:
    """Rate of `fn(part)`, repeated until MIN_SECONDS have passed."""
    wall0, cpu0, reps = time.perf_counter(), time.process_time(), 0
    while True:
        fn(part)
        reps += 1
        wall = time.perf_counter() - wall0
        if wall >= MIN_SECONDS:
            return Rate((part.stop - part.start) * reps / wall, (time.process_time() - cpu0) / wall)


def compare(contenders: dict[str, tuple[Op, int] | None], rounds: int) -> dict[str, Rate | None]:
    """Median rate of each (op, size) contender, timed round-robin on successive 1/rounds chunks of its size."""
    samples: dict[str, list[Rate]] = {name: [] for name, entry in contenders.items() if entry}
    for r in range(rounds):
        for name, entry in contenders.items():
            if entry:
                fn, size = entry
                step = -(-size // rounds)
                if r * step < size:
                    samples[name].append(timed(fn, slice(r * step, min(size, (r + 1) * step))))
    return {name: median(samples[name]) if name in samples else None for name in contenders}


def median(rates: list[Rate]) -> Rate:
    return sorted(rates, key=lambda rate: rate.ops)[(len(rates) - 1) // 2]


def with_workers(fn: Op) -> Op:
    """`fn` with our vector operations split across the worker processes."""

    def run(part: slice) -> Any:
        parallel.configure(min_size=1)
        try:
            return fn(part)
        finally:
            parallel.configure(min_size=SERIAL)

    return run


def ours_paillier(bits: int, n: int) -> tuple[Contender, dict[str, Any]]:
    rng = np.random.default_rng(0)
    values = np.asarray(rng.integers(-(2**62), 2**62, size=n), dtype=object)
    scalars = np.asarray(rng.integers(-(2**31), 2**31, size=n), dtype=object)
    start = time.perf_counter()
    pk, sk = generate_keypair(bits)
    keygen = time.perf_counter() - start
    start = time.perf_counter()
    _ = pk.table, sk.tables
    tables = time.perf_counter() - start
    parallel.configure(workers=2, min_size=SERIAL)
    ct, ct2 = pk.encrypt(values), sk.encrypt(values)
    assert sk.decrypt(ct[:20]).tolist() == values[:20].tolist() == sk.decrypt(ct2[:20]).tolist()

    packer = Packer.for_key(pk, value_bound=2**52 - 1, max_terms=n)
    packed_values = np.asarray(rng.integers(-(2**52) + 1, 2**52, size=(-(-n // packer.slots), packer.slots)), object)
    packed_ct = sk.encrypt(packer.pack(packed_values))
    assert (packer.unpack(sk.decrypt(packed_ct[:3]), 1) == packed_values[:3]).all()

    start = time.perf_counter()
    with_workers(lambda s: (pk.encrypt(values[s]), sk.encrypt(values[s])))(slice(0, 2000))
    startup = time.perf_counter() - start
    ops = scheme_ops(pk, sk, values, scalars, ct, ct2)
    info = {
        "sk": sk,
        "bytes": len(pk.ciphertexts_to_bytes(ct)) / n,
        "one_off": f"keygen {keygen:.2f} s, fixed-base tables {tables:.2f} s (public + key owner), "
        f"2 workers started and their tables built in {startup:.2f} s",
        "packed": (lambda s: packer.unpack(sk.decrypt(packed_ct[s]), 1), len(packed_ct)),
        "slots": packer.slots,
        "slot_bits": packer.slot_bits,
    }
    return Contender(n, ops), info


def phe_paillier(sk: Any, n: int) -> tuple[Contender, dict[str, Any]]:
    """phe with the same p, q as our key (g = n + 1 in both)."""
    rng = np.random.default_rng(1)
    values = [int(v) for v in rng.integers(-(2**62), 2**62, size=n)]
    scalars = [int(v) for v in rng.integers(-(2**31), 2**31, size=n)]
    public = phe_lib.PaillierPublicKey(int(sk.public_key.n))
    private = phe_lib.PaillierPrivateKey(public, int(sk.p), int(sk.q))
    enc = [public.encrypt(v) for v in values]
    enc2 = enc[::-1]
    assert private.decrypt(enc[0]) == values[0]
    ops: dict[str, Op] = {
        "enc_public": lambda s: [public.encrypt(v) for v in values[s]],
        "dec": lambda s: [private.decrypt(e) for e in enc[s]],
        "add": lambda s: [a + b for a, b in zip(enc[s], enc2[s], strict=True)],
        "mul": lambda s: [a * k for a, k in zip(enc[s], scalars[s], strict=True)],
    }
    return Contender(n, ops), {"bytes": len(str(enc[0].ciphertext())), "has_gmpy2": phe_lib.util.HAVE_GMP}


def heu_scheme(schema: Any, bits: int, n: int, rounds: int) -> tuple[Contender, dict[str, Any]]:
    """HEU arrays are prepared per round chunk (HEU arrays cannot be sliced cheaply)."""
    from heu import numpy as hnp

    rng = np.random.default_rng(2)
    kit = hnp.setup(schema, bits)
    encoder = kit.integer_encoder(scale=1)
    encryptor, decryptor, evaluator = kit.encryptor(), kit.decryptor(), kit.evaluator()
    step = -(-n // rounds)
    sizes = [min(step, n - start) for start in range(0, n, step)]
    values = [kit.array(rng.integers(-(2**62), 2**62, size=size), encoder) for size in sizes]
    scalars = [kit.array(rng.integers(-(2**31), 2**31, size=size), encoder) for size in sizes]
    cts = [encryptor.encrypt(v) for v in values]
    cts2 = [encryptor.encrypt(v) for v in values]
    ops: dict[str, Op] = {
        "enc_public": lambda s: encryptor.encrypt(values[s.start // step]),
        "dec": lambda s: decryptor.decrypt(cts[s.start // step]),
        "add": lambda s: evaluator.add(cts[s.start // step], cts2[s.start // step]),
        "mul": lambda s: evaluator.mul(cts[s.start // step], scalars[s.start // step]),
    }
    return Contender(n, ops), {"bytes": sum(len(c.serialize()) for c in cts) / n}


def scheme_ops(pk: Any, sk: Any, values: np.ndarray, scalars: np.ndarray, ct: np.ndarray,
               ct2: np.ndarray) -> dict[str, Op]:
    """The timed operations of one of our schemes; Paillier and OU share the `he_scheme` interface."""
    return {
        "enc_public": lambda s: pk.encrypt(values[s]),
        "enc_owner": lambda s: sk.encrypt(values[s]),
        "dec": lambda s: sk.decrypt(ct[s]),
        "add": lambda s: pk.add(ct[s], ct2[s]),
        "mul": lambda s: pk.mul_plain(ct[s], scalars[s]),
    }


def ours_ou(bits: int, n: int) -> tuple[Contender, dict[str, Any]]:
    rng = np.random.default_rng(3)
    values = np.asarray(rng.integers(-(2**62), 2**62, size=n), dtype=object)
    scalars = np.asarray(rng.integers(-(2**31), 2**31, size=n), dtype=object)
    pk, sk = ou_keypair(bits)
    ct, ct2 = pk.encrypt(values), sk.encrypt(values)  # also builds the tables, outside the timing
    assert sk.decrypt(ct[:20]).tolist() == values[:20].tolist() == sk.decrypt(ct2[:20]).tolist()
    ops = scheme_ops(pk, sk, values, scalars, ct, ct2)
    return Contender(n, ops), {"bytes": len(pk.ciphertexts_to_bytes(ct)) / n}


def entry(contender: Contender | None, op: str, wrap: Callable[[Op], Op] | None = None) -> tuple[Op, int] | None:
    if contender is None or op not in contender.ops:
        return None
    fn = contender.ops[op]
    return (wrap(fn) if wrap else fn), contender.size


def fmt_rate(rate: Rate | None) -> str:
    return "—" if rate is None else f"{rate.ops:,.0f}"


def fmt_ratio(a: Rate | None, b: Rate | None) -> str:
    return "—" if a is None or b is None else f"{a.ops / b.ops:.2f}×"


def print_table(title: str, rows: list[tuple[str, Rate | None, Rate | None, Rate | None]]) -> None:
    print(f"\n{title}")
    header = (
        f"{'operation':<34}{'ours':>10}{'phe':>10}{'HEU':>10}{'ours/phe':>10}{'ours/HEU':>10}"
        f"{'cpu/wall ours':>15}{'HEU':>6}"
    )
    print(header)
    print("-" * len(header))
    for name, ours, ref_phe, ref_heu in rows:
        cpu = [("—" if rate is None else f"{rate.cpu:.2f}") for rate in (ours, ref_heu)]
        print(
            f"{name:<34}{fmt_rate(ours):>10}{fmt_rate(ref_phe):>10}{fmt_rate(ref_heu):>10}"
            f"{fmt_ratio(ours, ref_phe):>10}{fmt_ratio(ours, ref_heu):>10}{cpu[0]:>15}{cpu[1]:>6}"
        )


def verdict(name: str, ratio: float | None, bar: float) -> None:
    if ratio is None:
        print(f"  [n/a ] {name}: ours not available")
    else:
        print(f"  [{'PASS' if ratio >= bar else 'FAIL'}] {name}: {ratio:.2f}×")


def ratio_of(a: Rate | None, b: Rate | None) -> float | None:
    return None if a is None or b is None else a.ops / b.ops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="values per operation for ours")
    parser.add_argument("--ref-n", type=int, default=1_000, help="values per operation for phe and HEU")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bits", type=int, default=2048)
    parser.add_argument("--heu-threads", type=int, default=1, help="YACL_NUM_THREADS for HEU; 0: HEU's default")
    args = parser.parse_args()
    ref_n = min(args.ref_n, args.n)
    warnings.simplefilter("ignore", UserWarning)
    if args.heu_threads:
        os.environ["YACL_NUM_THREADS"] = str(args.heu_threads)  # read when HEU starts its thread pool
    from heu import phe as heu_phe

    print(
        f"HE benchmark: {args.bits}-bit keys, ours on {args.n:,} values, phe and HEU on {ref_n:,}; "
        f"os.cpu_count() = {os.cpu_count()}; HEU threads: {args.heu_threads or 'default'}; rates in operations/s"
    )
    load_start = os.getloadavg()[0]
    ours, ours_info = ours_paillier(args.bits, args.n)
    ref_phe, phe_info = phe_paillier(ours_info["sk"], ref_n)
    heu_paillier, heu_info = heu_scheme(heu_phe.SchemaType.ZPaillier, args.bits, ref_n, args.rounds)
    ou, ou_info = ours_ou(args.bits, args.n)
    heu_ou, heu_ou_info = heu_scheme(heu_phe.SchemaType.OU, args.bits, ref_n, args.rounds)

    paillier_rates, ou_rates = {}, {}
    for op in OPS:
        paillier_rates[op] = compare(
            {
                "ours": entry(ours, op),
                "ours2": entry(ours, op, with_workers) if op in ("enc_public", "enc_owner", "dec") else None,
                "phe": entry(ref_phe, op if op != "enc_owner" else "enc_public"),
                "heu": entry(heu_paillier, op if op != "enc_owner" else "enc_public"),
            },
            args.rounds,
        )
        ou_rates[op] = compare(
            {"ours": entry(ou, op), "heu": entry(heu_ou, op if op != "enc_owner" else "enc_public")}, args.rounds
        )
    packed = compare({"ours": ours_info["packed"]}, args.rounds)["ours"]
    packed.ops *= ours_info["slots"]
    parallel.shutdown()
    print(
        f"load average (1 min) at start {load_start:.2f}, at end {os.getloadavg()[0]:.2f}: other work on this machine"
    )

    p = paillier_rates
    print_table(
        f"Paillier {args.bits}-bit (ours: DJN 448-bit r, fixed-base tables, CRT; HEU: ZPaillier; one process)",
        [
            ("encrypt, public key", p["enc_public"]["ours"], p["enc_public"]["phe"], p["enc_public"]["heu"]),
            ("encrypt, key owner (CRT)", p["enc_owner"]["ours"], p["enc_owner"]["phe"], p["enc_owner"]["heu"]),
            ("decrypt per ciphertext", p["dec"]["ours"], p["dec"]["phe"], p["dec"]["heu"]),
            (f"decrypt per packed value ({ours_info['slots']}/ct)", packed, p["dec"]["phe"], p["dec"]["heu"]),
            ("ct + ct", p["add"]["ours"], p["add"]["phe"], p["add"]["heu"]),
            ("ct × pt (32-bit)", p["mul"]["ours"], p["mul"]["phe"], p["mul"]["heu"]),
        ],
    )
    print("  phe and HEU have no key-owner encryption: that row compares with their (only) encryption.")
    layout = f"{ours_info['slots']} slots of {ours_info['slot_bits']} bits"
    print(f"  packing: {layout} (|v| < 2^52, headroom for {args.n:,}-term sums)")
    print(f"  one-off (ours): {ours_info['one_off']}")
    print(f"  phe uses gmpy2: {phe_info['has_gmpy2']}")

    print(f"\nOurs, 1 vs 2 worker processes (sharedml.crypto.parallel), {args.n:,} values")
    for name, op in [("encrypt, public key", "enc_public"), ("encrypt, key owner", "enc_owner"), ("decrypt", "dec")]:
        one, two = p[op]["ours"], p[op]["ours2"]
        print(f"  {name:<24}{one.ops:>10,.0f}{two.ops:>10,.0f}   speed-up {two.ops / one.ops:.2f}×")

    o = ou_rates
    print_table(
        f"OU {args.bits}-bit (ours: sharedml.crypto.ou; HEU: OU; phe has no OU)",
        [
            ("encrypt, public key", o["enc_public"]["ours"], None, o["enc_public"]["heu"]),
            ("encrypt, key owner", o["enc_owner"]["ours"], None, o["enc_owner"]["heu"]),
            ("decrypt per ciphertext", o["dec"]["ours"], None, o["dec"]["heu"]),
            ("ct + ct", o["add"]["ours"], None, o["add"]["heu"]),
            ("ct × pt (32-bit)", o["mul"]["ours"], None, o["mul"]["heu"]),
        ],
    )

    print("\nBytes per ciphertext")
    print(
        f"  Paillier: ours {ours_info['bytes']:.0f}, HEU {heu_info['bytes']:.0f}, "
        f"phe {phe_info['bytes']} (decimal string, its JSON form)"
    )
    print(f"  OU: ours {ou_info['bytes']:.0f}, HEU {heu_ou_info['bytes']:.0f}")

    print("\nBars (same run)")
    verdict("public-key encryption >= 10x phe", ratio_of(p["enc_public"]["ours"], p["enc_public"]["phe"]), 10)
    verdict("key-owner encryption >= HEU ZPaillier", ratio_of(p["enc_owner"]["ours"], p["enc_owner"]["heu"]), 1)
    verdict("decryption >= 1.5x phe per ciphertext, 1 process", ratio_of(p["dec"]["ours"], p["dec"]["phe"]), 1.5)
    verdict(
        "decryption >= 1.5x phe per ciphertext, 2 processes (phe: 1)", ratio_of(p["dec"]["ours2"], p["dec"]["phe"]), 1.5
    )
    verdict("  (per packed value, 1 process, vs phe per ciphertext)", ratio_of(packed, p["dec"]["phe"]), 1.5)
    verdict("ct+ct not slower than phe", ratio_of(p["add"]["ours"], p["add"]["phe"]), 1)
    verdict("OU public-key encryption >= 0.5x HEU OU", ratio_of(o["enc_public"]["ours"], o["enc_public"]["heu"]), 0.5)


if __name__ == "__main__":
    main()
