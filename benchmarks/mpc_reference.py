"""The reference engines of `benchmarks/mpc.py`, and the inputs every engine of that benchmark uses.

    python benchmarks/mpc_reference.py spu OP small|full       # OP: matmul, less, sigmoid-DEFAULT|REAL|SEG3
    python benchmarks/mpc_reference.py mpyc secfxp64|secint32 N -M3 -B PORT

Each reference runs in a process of its own, so that its imports, threads and peak memory stay out
of the measurements of ours. Prints one JSON line: seconds, bytes (sent by all parties), rounds,
max_error (against numpy), rss_mb (peak RSS of this process).

- SPU: SecretFlow's SEMI2K simulation (parties as threads over its in-memory link, as
  `spu.utils.simulation.Simulator` runs them), 2 parties, FM64, 18 fractional bits. The executable
  is compiled once, run once to warm up, then `--repeats` times; seconds is the best run of
  `Runtime.run` alone (inputs already shared, the output left shared), the slowest party. Bytes and
  rounds come from one more run with SPU's profiling on: its link's total send bytes over the
  parties, and the most send actions of a party (SPU counts no rounds; a round is one send action
  of each party). The sigmoid is fed to SPU as StableHLO `logistic`: `jax.nn.sigmoid` lowers to
  exp and a division, which never reaches `RuntimeConfig.sigmoid_mode` (in spu 0.9.5 DEFAULT
  resolves to REAL; MM1, the only other mode, is off by up to 0.5 and left out).
- MPyC: 3 parties as 3 local processes (its `-M3`, which starts parties 1 and 2 itself), secure
  comparisons x < y of whole arrays, as fixed point (64 bits, 18 fractional) or as 32-bit integers
  of the same fixed-point encodings. Its evaluation is lazy, so seconds covers the comparison and
  opening its result; bytes are summed over the 3 parties; no round count.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FRAC_BITS = 18
SEED = 2024


@dataclass(frozen=True)
class Size:
    n: int  # elements compared and put through the sigmoid
    matmul: tuple[int, int]  # (m, k): an m×k matrix times a k×1 vector
    three_party_n: int  # comparisons for the 3-party runs (MPyC and ours)


SIZES = {"full": Size(100_000, (1000, 100), 10_000), "small": Size(1000, (100, 10), 1000)}


def make_inputs(n: int, matmul: tuple[int, int]) -> dict[str, np.ndarray]:
    """x, y uniform on [-8, 8] (the sigmoid's bar is set on that range); a, b uniform on [-1, 1]."""
    rng = np.random.default_rng(SEED)
    m, k = matmul
    return {"x": rng.uniform(-8, 8, n), "y": rng.uniform(-8, 8, n),
            "a": rng.uniform(-1, 1, (m, k)), "b": rng.uniform(-1, 1, (k, 1))}


def expected(op: str, data: dict[str, np.ndarray]) -> np.ndarray:
    """The plaintext answer the secure result is checked against."""
    if op == "matmul":
        return data["a"] @ data["b"]
    if op == "less":
        return (data["x"] < data["y"]).astype(np.float64)
    return 1 / (1 + np.exp(-data["x"]))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- SPU ------------------------------------------------------------------------------------------
def _spu_executable(op: str, data: dict[str, np.ndarray]):
    """(executable, its inputs) for `op`, compiled once."""
    import jax.numpy as jnp
    import spu.api as spu_api
    from spu import libspu
    from spu.utils import frontend

    if op.startswith("sigmoid"):
        n = len(data["x"])
        text = (f"module @sigmoid {{ func.func public @main(%arg0: tensor<{n}xf64>) -> tensor<{n}xf64> {{ "
                f"%0 = stablehlo.logistic %arg0 : tensor<{n}xf64> return %0 : tensor<{n}xf64> }} }}")
        source = libspu.CompilationSource(libspu.SourceIRType.STABLEHLO, text.encode(), [libspu.Visibility.VIS_SECRET])
        code = spu_api.compile(source, libspu.CompilerOptions())
        return libspu.Executable(name="sigmoid", input_names=["in0"], output_names=["out0"], code=code), [data["x"]]
    fn, args = (jnp.matmul, [data["a"], data["b"]]) if op == "matmul" else (jnp.less, [data["x"], data["y"]])
    names = [f"in{i}" for i in range(len(args))]
    executable, _ = frontend.compile(frontend.Kind.JAX, fn, args, {}, names, [libspu.Visibility.VIS_SECRET] * len(args),
                                     lambda outputs: ["out0"])
    return executable, args


def _spu_run(executable, shares: list, config, parties: int) -> tuple[float, list]:
    """One run of `executable` by every party (threads, in-memory link): (slowest Runtime.run, output shares)."""
    import spu.api as spu_api
    from spu import libspu

    desc = libspu.link.Desc()
    for rank in range(parties):
        desc.add_party(f"id_{rank}", f"thread_{rank}")
    start = threading.Barrier(parties)
    seconds, outputs = [0.0] * parties, [None] * parties

    def party(rank: int) -> None:
        runtime = spu_api.Runtime(libspu.link.create_mem(desc, rank), config)
        for name, share in zip(executable.input_names, shares, strict=True):
            runtime.set_var(name, share[rank])
        start.wait()
        began = time.perf_counter()
        runtime.run(executable)
        seconds[rank] = time.perf_counter() - began
        outputs[rank] = runtime.get_var(executable.output_names[0])

    threads = [threading.Thread(target=party, args=(rank,)) for rank in range(parties)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return max(seconds), outputs


def _link_totals(log: Path) -> tuple[int, int]:
    """(send bytes summed over the parties, most send actions of a party) from SPU's profiling lines."""
    sent, actions = 0, 0
    for line in log.read_text().splitlines():
        if "Link details:" in line:
            fields = dict(part.strip().rsplit(" ", 1) for part in line.split("Link details:")[1].split(","))
            sent += int(fields["total send bytes"])
            actions = max(actions, int(fields["send actions"]))
    return sent, actions


def run_spu(op: str, size: Size, repeats: int) -> dict[str, float]:
    from spu import libspu

    with tempfile.TemporaryDirectory(prefix="sharedml-spu-bench-") as folder:
        options = libspu.logging.LogOptions()
        options.enable_console_logger = False
        options.system_log_path = str(Path(folder) / "spu.log")  # where the profiled run's link totals go
        libspu.logging.setup_logging(options)
        return _spu_measure(op, size, repeats, Path(folder) / "spu.log")


def _spu_measure(op: str, size: Size, repeats: int, log: Path) -> dict[str, float]:
    import spu.api as spu_api
    from spu import libspu

    data = make_inputs(size.n, size.matmul)
    want = expected(op.split("-")[0], data)
    config = libspu.RuntimeConfig(protocol=libspu.ProtocolKind.SEMI2K, field=libspu.FieldType.FM64,
                                  fxp_fraction_bits=FRAC_BITS)
    if op.startswith("sigmoid-"):
        config.sigmoid_mode = getattr(libspu.RuntimeConfig.SigmoidMode, "SIGMOID_" + op.split("-")[1])
    executable, args = _spu_executable(op, data)
    io = spu_api.Io(2, config)
    shares = [io.make_shares(np.asarray(a), libspu.Visibility.VIS_SECRET) for a in args]
    _, outputs = _spu_run(executable, shares, config, 2)  # warm-up
    best = min(_spu_run(executable, shares, config, 2)[0] for _ in range(repeats))
    profiled = libspu.RuntimeConfig(config)
    profiled.enable_pphlo_profile = True
    _spu_run(executable, shares, profiled, 2)
    sent, actions = _link_totals(log)
    result = np.asarray(io.reconstruct(outputs), dtype=np.float64).reshape(want.shape)
    return {"seconds": best, "bytes": sent, "rounds": actions, "max_error": float(np.max(np.abs(result - want))),
            "rss_mb": peak_rss_mb()}


# -- MPyC -----------------------------------------------------------------------------------------
async def _mpyc_less(mpc, kind: str, n: int) -> dict[str, float] | None:
    data = make_inputs(n, (1, 1))
    if kind == "secfxp64":
        secure, x, y = mpc.SecFxp(64, FRAC_BITS), data["x"], data["y"]
    else:  # the same fixed-point encodings, compared as integers
        secure = mpc.SecInt(32)
        x, y = (np.rint(np.ldexp(data[v], FRAC_BITS)).astype(np.int64) for v in ("x", "y"))
    await mpc.start()
    dummy = np.zeros_like(x)
    sx = mpc.input(secure.array(x if mpc.pid == 0 else dummy), senders=0)
    sy = mpc.input(secure.array(y if mpc.pid == 1 else dummy), senders=1)
    await mpc.barrier()
    sent_before = sum(peer.protocol.nbytes_sent for peer in mpc.parties if peer.pid != mpc.pid)
    began = time.perf_counter()
    less = await mpc.output(sx < sy)
    seconds = time.perf_counter() - began
    sent = sum(peer.protocol.nbytes_sent for peer in mpc.parties if peer.pid != mpc.pid) - sent_before
    totals = await mpc.transfer((seconds, sent, peak_rss_mb()), receivers=0)
    await mpc.shutdown()
    if mpc.pid != 0:
        return None
    error = float(np.max(np.abs(np.asarray(less, dtype=np.float64) - expected("less", data))))
    return {"seconds": max(t[0] for t in totals), "bytes": sum(t[1] for t in totals), "rounds": None,
            "max_error": error, "rss_mb": max(t[2] for t in totals)}


def run_mpyc(kind: str, n: int) -> dict[str, float] | None:
    from mpyc.runtime import mpc  # reads -M/-B from the command line and starts the other parties

    return mpc.run(_mpyc_less(mpc, kind, n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("engine", choices=["spu", "mpyc"])
    parser.add_argument("what", help="spu: the operator; mpyc: secfxp64 or secint32")
    parser.add_argument("size", help="spu: small or full; mpyc: the number of comparisons")
    parser.add_argument("--repeats", type=int, default=3)
    args, _ = parser.parse_known_args()  # MPyC's own options (-M3 -B PORT) are read by MPyC
    if args.engine == "spu":
        result = run_spu(args.what, SIZES[args.size], args.repeats)
    else:
        result = run_mpyc(args.what, int(args.size))
    if result is not None:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
