"""Second PSI engine: SecretFlow's PSI library (pip package `spu`, module `spu.psi`), two parties only.

The protocols (RR22, KKRT, ECDH) run in C++ over spu's own brpc link, not over our channel. Our
channel only sets that link up: each party binds a free TCP port and the parties exchange
`host:port`, a random link id and their settings with `ctx.broadcast` / `ctx.gather`.

* spu runs in a child process. spu 0.9.5 ends the whole process (`exit(-1)`, or a crash) when an
  asynchronous send fails, e.g. because the peer died mid-protocol, and its Python API cannot turn
  that off; in a child that only fails this call. The child also gets a private TMPDIR, so spu's
  scratch files (sorted inputs, hash buckets) and trace files stay under `workdir`, and its logs go
  to a file there instead of our stdout. Everything is deleted afterwards, on failure too. The child
  exits when the parent goes away (it watches its stdin).
* With an `identity` the link is mutual TLS with the federation certificates: each side's server and
  client present the party's certificate and accept only a peer whose certificate chains to the
  federation CA. The PEM files are written owner-only and deleted once the link is up. With
  `identity=None` (in-memory simulation, tests) the link is plain TCP: acceptable on loopback only.
* Keys go to spu as hex of their UTF-8 bytes (bytes keys as they are), so any string, including
  ones with commas, quotes or newlines, or that look like numbers or nulls, is compared exactly.
* Each party adds one random pad row to its input. spu sends the peer a SHA-256 digest of the whole
  input key list (to detect identical inputs); the pad makes that digest useless for confirming a
  guess of the party's set. The pad cannot match anything, so the intersection is unchanged; the
  peer sees the set size plus one.

The result is the positions into `keys` of the intersecting keys, ordered by key (by the keys'
UTF-8 bytes, which for text is code-point order), so it is the same order at every party that
receives it. `docs/security.md` states what each party learns.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import ipaddress
import json
import math
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..net.certs import Identity
    from ..runtime.context import Context

PROTOCOLS = ("rr22", "kkrt", "ecdh")
ECDH_CURVES = ("25519", "fourq", "sm2", "secp256k1")
INSTALL_HINT = "pip install 'sharedml[spu]'"
_TAG = "psi/spu-link"
_KEY, _ROW = "key", "row"
_CONNECT_INTERVAL_MS = 200
_SEND_RETRIES, _SEND_RETRY_MS = 2, 200  # brpc re-sends a failed message twice, after 0.2 s and 0.4 s
_TEARDOWN_GRACE = 10.0  # seconds the child may take to close its link once the result is written
# The child loads this file on its own, not as part of `sharedml` (whose package imports cost time).
_CHILD_BOOTSTRAP = (
    "import importlib.util, sys\n"
    "spec = importlib.util.spec_from_file_location('_sharedml_spu_child', sys.argv[1])\n"
    "module = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(module)\n"
    "module._child_main()\n"
)


def spu_available() -> bool:
    """Whether SecretFlow's `spu` package is installed (checked without importing it)."""
    try:
        return importlib.util.find_spec("spu") is not None
    except (ImportError, ValueError):
        return False


def spu_intersect(ctx: Context, keys: Sequence[str | bytes], *, protocol: str = "rr22", receiver: str | None = None,
                  workdir: Path, host: str = "127.0.0.1", identity: Identity | None = None,
                  timeout: float = 600.0, ecdh_curve: str = "25519", bucket_size: int | None = None) -> np.ndarray:
    """Two-party PSI with spu; returns int64 positions into `keys` of the intersection, ordered by key.

    keys: this party's IDs, already normalised and unique (a duplicate raises ValueError).
    protocol: "rr22" (fastest; VOLE-based OPRF), "kkrt" (OT-based OPRF) or "ecdh" (least traffic).
    receiver: the one party that learns the intersection (the other gets an empty array), or None
      for both. Both parties must pass the same protocol, receiver, curve, bucket size and TLS choice.
    workdir: where this party's temporary files go (a private subfolder, removed afterwards).
    host: the address the peer reaches this party at; the link's port is bound on it.
    identity: this party's federation key and certificates: the link is then mutual TLS. None means
      a plain-TCP link, for the in-memory simulation on loopback only.
    timeout: seconds to wait for the peer: for the address exchange, to connect the link (a little
      more in the worst case), and for each message of the protocol; a dead peer makes this fail.
    ecdh_curve, bucket_size: spu's ECDH curve, and IDs per bucket (spu's default: 2^20).
    Raises ImportError without spu, ValueError for bad arguments or settings that differ between
    the parties, RuntimeError when spu fails (peer gone, timeout, TLS refused).
    """
    if not spu_available():
        raise ImportError(f"the spu PSI engine needs SecretFlow's spu package: {INSTALL_HINT}")
    parties = ctx.parties
    if len(parties) != 2:
        raise ValueError(f"the spu PSI engine supports exactly two parties; this task has {len(parties)} "
                         f"({', '.join(parties)}); use the built-in ecdh engine for more")
    protocol, ecdh_curve = protocol.lower(), ecdh_curve.lower()
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown spu PSI protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if ecdh_curve not in ECDH_CURVES:
        raise ValueError(f"unknown ECDH curve {ecdh_curve!r}; choose one of {', '.join(ECDH_CURVES)}")
    if receiver is not None and receiver not in parties:
        raise ValueError(f"receiver {receiver!r} is not a party of this task ({', '.join(parties)})")
    if identity is not None and identity.party != ctx.party:
        raise ValueError(f"identity is for party {identity.party!r}, but this is party {ctx.party!r}")
    if bucket_size is not None and bucket_size < 1:
        raise ValueError(f"bucket_size must be positive, got {bucket_size}")
    if not timeout > 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if identity is None and not _is_loopback(host):
        raise ValueError(f"without an identity the spu link is plain TCP, which is only allowed on loopback, "
                         f"not on {host!r}: pass the party's federation identity for mutual TLS")
    encoded = _encode(keys)

    rank = parties.index(ctx.party)
    peer = parties[1 - rank]
    settings = {"protocol": protocol, "receiver": receiver, "tls": identity is not None,
                "curve": ecdh_curve, "bucket_size": bucket_size}
    offer = {"address": _address(host, _free_port(host)), "nonce": secrets.token_hex(16), "settings": settings}
    ctx.broadcast(_TAG, offer)
    theirs = ctx.gather(_TAG, timeout=timeout)[peer]
    if not isinstance(theirs, dict) or theirs.get("settings") != settings:
        raise ValueError(f"parties disagree on the spu PSI settings: {ctx.party} has {settings}, {peer} has "
                         f"{theirs.get('settings') if isinstance(theirs, dict) else theirs!r}")
    if not isinstance(theirs.get("address"), str) or not isinstance(theirs.get("nonce"), str):
        raise ValueError(f"party {peer!r} sent a malformed spu link offer")
    offers = {ctx.party: offer, peer: theirs}
    # Every message key on the link starts with its id. A random id, known only to the two parties,
    # means a message injected by an outsider (brpc's server also accepts plaintext) is never read.
    nonces = "".join(offers[p]["nonce"] for p in parties)
    link_id = "sharedml-psi-" + hashlib.sha256(nonces.encode()).hexdigest()[:32]

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="spu-psi-", dir=workdir))  # mode 0700
    try:
        job: dict[str, Any] = {
            "link_id": link_id, "rank": rank, "parties": [[p, offers[p]["address"]] for p in parties],
            "timeout": timeout, "protocol": protocol, "curve": ecdh_curve, "bucket_size": bucket_size,
            "receiver_rank": 0 if receiver is None else parties.index(receiver), "broadcast": receiver is None,
            "input": str(scratch / "input.csv"), "output": str(scratch / "output.csv"),
            "error": str(scratch / "error.txt"), "log": str(scratch / "spu.log"), "tls": None,
            "token": scratch.name,
        }
        if identity is not None:
            job["tls"] = _write_pems(identity, scratch)
        _write_input(Path(job["input"]), encoded)
        _run_child(job, scratch, ctx, peer)
        if receiver is not None and receiver != ctx.party:
            return np.empty(0, dtype=np.int64)
        rows = _read_rows(Path(job["output"]), len(encoded))
        order = np.argsort(np.asarray(encoded, dtype=object)[rows], kind="stable")
        return rows[order]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _encode(keys: Sequence[str | bytes]) -> list[str]:
    """Hex of each key's UTF-8 bytes (bytes as they are), prefixed so spu never reads it as a number."""
    encoded = ["k" + (k if isinstance(k, bytes) else str(k).encode()).hex() for k in keys]
    duplicates = len(encoded) - len(set(encoded))
    if duplicates:
        raise ValueError(f"spu PSI keys must be unique: {duplicates} duplicate(s) among {len(encoded)} keys; "
                         "deduplicate first")
    return encoded


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _write_pems(identity: Identity, folder: Path) -> dict[str, str]:
    paths = {"key": folder / "party.key", "cert": folder / "party.crt", "ca": folder / "ca.crt"}
    for name, data in (("key", identity.key_pem), ("cert", identity.cert_pem), ("ca", identity.ca_pem)):
        fd = os.open(paths[name], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    return {name: str(path) for name, path in paths.items()}


def _write_input(path: Path, encoded: list[str]) -> None:
    pad = "pad" + secrets.token_hex(16)  # not "k" + hex, so it can match no encoded key
    with open(path, "w", encoding="ascii", newline="\n") as handle:
        handle.write(f"{_KEY},{_ROW}\n{pad},-1\n")
        handle.write("".join([f"{key},{row}\n" for row, key in enumerate(encoded)]))


def _run_child(job: dict[str, Any], scratch: Path, ctx: Context, peer: str) -> None:
    """Run spu in a child; start its link only once both parties' children have spu loaded."""
    (scratch / "tmp").mkdir()
    env = dict(os.environ, TMPDIR=str(scratch / "tmp"))
    # The child's stdout is our control pipe; it sends spu's own output (fd 1 and 2) to spu.log.
    log_fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = subprocess.Popen([sys.executable, "-c", _CHILD_BOOTSTRAP, __file__, job["token"]],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_fd, env=env, cwd=scratch)
    finally:
        os.close(log_fd)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        ready = False
        try:
            proc.stdin.write(json.dumps(job).encode() + b"\n")
            proc.stdin.flush()
            ready = _read_line(proc.stdout, job["timeout"]) == b"ready"
        except BrokenPipeError:
            pass
        if ready:
            ctx.send(peer, _TAG + "/ready", True)
            ctx.recv(peer, _TAG + "/ready", timeout=job["timeout"])
            try:
                proc.stdin.write(b"go\n")
                proc.stdin.flush()
            except BrokenPipeError:
                pass
            if _read_line(proc.stdout, None) == b"done":
                # The result is complete. The link's teardown can still fail (a last acknowledgement to a
                # peer that already left makes spu exit with -1) or stall: neither matters now.
                try:
                    proc.wait(timeout=min(job["timeout"], _TEARDOWN_GRACE))
                except subprocess.TimeoutExpired:
                    pass
                code = 0
            else:
                code = proc.wait()
        else:
            try:
                code = proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                code = f"none: spu did not load within {job['timeout']:g} s"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                stream.close()
    if code != 0:
        error = Path(job["error"])
        reason = error.read_text(errors="replace").strip() if error.exists() else ""
        if not reason:
            reason = _describe_exit(code)
        ctx.log.debug("spu PSI log tail:\n%s", _tail(Path(job["log"])))
        raise RuntimeError(f"spu PSI ({job['protocol']}) failed at party {ctx.party!r}: {reason}")


def _describe_exit(code: int | str | None) -> str:
    if isinstance(code, int) and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        if name == "SIGKILL":
            return "the spu process was killed (SIGKILL: out of memory, or stopped from outside)"
        return f"the spu process died of signal {name} (spu crashes like this when the peer goes away mid-protocol)"
    if code == 255:
        return "the spu process exited with -1 (what spu does when a message to the peer cannot be sent: the peer left)"
    return f"the spu process ended with exit code {code}"


def _read_line(stream: Any, timeout: float | None) -> bytes:
    """One line from the child's control pipe, or b"" at EOF or after `timeout` seconds (None: no limit)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    line = b""
    fd = stream.fileno()
    while not line.endswith(b"\n"):
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return b""
        if not select.select([fd], [], [], remaining)[0]:
            return b""
        chunk = os.read(fd, 1)
        if not chunk:
            return b""
        line += chunk
    return line.strip()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _read_rows(path: Path, n: int) -> np.ndarray:
    import pandas as pd

    if not path.exists():
        raise RuntimeError(f"spu PSI finished without writing its result file {path.name}")
    rows = pd.read_csv(path, usecols=[_ROW], dtype={_ROW: np.int64})[_ROW].to_numpy()
    rows = rows[rows >= 0]  # the pad row could only match a peer that knew it
    if rows.size and (rows.max() >= n or np.unique(rows).size != rows.size):
        raise RuntimeError("spu PSI returned rows that are not positions of this party's keys")
    return rows


# ---- the child process -------------------------------------------------------------------------


def _set_timeouts(desc: Any, timeout: float) -> None:
    """Bound every wait on the peer by about `timeout`, so a dead peer makes the call fail, never hang.

    Connecting: yacl tries `connect_retry_times` times, attempt i with an RPC timeout of
    ((i mod 11) + 2) s, which brpc retries `max_retry` times after short sleeps; attempts are
    counted so that the worst case (a peer that accepts TCP but never answers) fits in `timeout`,
    with at least two (a peer that is not listening yet fails fast and is tried again soon).
    Afterwards every receive waits at most `timeout` for the peer's next message.
    """
    retry = desc.retry_opts
    retry.max_retry = _SEND_RETRIES
    retry.retry_interval_ms = _SEND_RETRY_MS
    retry.retry_interval_incr_ms = _SEND_RETRY_MS
    retry.max_retry_interval_ms = 4 * _SEND_RETRY_MS
    sleeps = sum(min(_SEND_RETRY_MS * (k + 1), 4 * _SEND_RETRY_MS) for k in range(_SEND_RETRIES))
    budget_ms = timeout * 1000
    attempts, spent = 0, 0.0
    while True:
        cost = (_SEND_RETRIES + 1) * ((attempts % 11) + 2) * 1000 + sleeps + (_CONNECT_INTERVAL_MS if attempts else 0)
        if attempts >= 2 and spent + cost > budget_ms:
            break
        spent += cost
        attempts += 1
    desc.connect_retry_times = attempts
    desc.connect_retry_interval_ms = _CONNECT_INTERVAL_MS
    desc.recv_timeout_ms = max(1000, math.ceil(budget_ms))
    desc.http_timeout_ms = max(1000, math.ceil(budget_ms))


def _link_desc(spu_link: Any, job: dict[str, Any]) -> Any:
    desc = spu_link.Desc()
    desc.id = job["link_id"]
    for party, address in job["parties"]:
        desc.add_party(party, address)
    _set_timeouts(desc, job["timeout"])
    tls = job["tls"]
    if tls is not None:
        desc.enable_ssl = True
        for options in (desc.client_ssl_opts, desc.server_ssl_opts):
            options.cert.certificate_path = tls["cert"]
            options.cert.private_key_path = tls["key"]
            options.verify.ca_file_path = tls["ca"]
            options.verify.verify_depth = 2  # > 0 turns verification on; our chains are party <- CA
    return desc


def _execute_config(spu_psi: Any, job: dict[str, Any]) -> Any:
    kinds = {"rr22": spu_psi.PsiProtocol.PROTOCOL_RR22, "kkrt": spu_psi.PsiProtocol.PROTOCOL_KKRT,
             "ecdh": spu_psi.PsiProtocol.PROTOCOL_ECDH}
    curves = {"25519": spu_psi.EllipticCurveType.CURVE_25519, "fourq": spu_psi.EllipticCurveType.CURVE_FOURQ,
              "sm2": spu_psi.EllipticCurveType.CURVE_SM2, "secp256k1": spu_psi.EllipticCurveType.CURVE_SECP256K1}
    protocol_conf = spu_psi.PsiProtocolConfig(protocol=kinds[job["protocol"]], receiver_rank=job["receiver_rank"],
                                              broadcast_result=job["broadcast"])
    if job["protocol"] == "ecdh":
        protocol_conf.ecdh_params.curve = curves[job["curve"]]
    if job["bucket_size"] is not None:
        protocol_conf.bucket_size = int(job["bucket_size"])
    return spu_psi.PsiExecuteConfig(
        protocol_conf=protocol_conf,
        input_params=spu_psi.InputParams(path=job["input"], selected_keys=[_KEY], keys_unique=True),
        output_params=spu_psi.OutputParams(path=job["output"], disable_alignment=False),
    )


def _exit_with_parent() -> None:
    sys.stdin.buffer.read()  # returns at EOF: the parent closed the pipe, or died
    os._exit(4)


def _remove_own_traces(token: str, since: float) -> None:
    """spu writes a small perfetto trace to /tmp/psi_<random>.trace (fixed path, not configurable).

    Ours are the ones written since we started that hold our command line, which has `token`.
    """
    folder = Path("/tmp")
    for path in folder.glob("psi_*.trace"):
        try:
            if path.stat().st_mtime >= since - 1 and token.encode() in path.read_bytes():
                path.unlink()
        except OSError:
            pass


def _load_spu() -> tuple[Any, Any]:
    """spu's PSI and link bindings. `spu/__init__` imports jax (0.7 s); the two bindings alone take
    0.05 s, so load them under a bare `spu` package, falling back to the normal import."""
    try:
        spec = importlib.util.find_spec("spu")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("spu is not installed")
        package = types.ModuleType("spu")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules["spu"] = package
        libpsi = importlib.import_module("spu.libpsi")
        libspu = importlib.import_module("spu.libspu")
        libpsi.psi_execute, libspu.link.create_brpc  # noqa: B018 - the names this module needs
        return libpsi, libspu.link
    except (ImportError, AttributeError):
        for name in [n for n in sys.modules if n == "spu" or n.startswith("spu.")]:
            del sys.modules[name]
        import spu.psi as spu_psi
        from spu import link as spu_link

        return spu_psi, spu_link


def _child_main() -> None:
    started = time.time()
    job = json.loads(sys.stdin.buffer.readline())
    control = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # spu's logs go to stdout: send them to spu.log with stderr
    code = 3
    try:
        spu_psi, spu_link = _load_spu()
        control.write("ready\n")
        control.flush()
        if sys.stdin.buffer.readline().strip() != b"go":
            os._exit(4)
        threading.Thread(target=_exit_with_parent, daemon=True).start()
        try:
            lctx = spu_link.create_brpc(_link_desc(spu_link, job), job["rank"])  # connects to the peer
        finally:
            for path in (job["tls"] or {}).values():  # brpc has loaded them into its TLS contexts
                Path(path).unlink(missing_ok=True)
        spu_psi.psi_execute(_execute_config(spu_psi, job), lctx)
        _remove_own_traces(job["token"], started)
        control.write("done\n")
        control.flush()
        code = 0
        lctx.stop_link()
    except BaseException as err:  # noqa: BLE001 - reported to the parent through the error file
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        # yacl errors read "what:", "[file:line] message", "stacktrace:", ...: keep the message.
        message = next((line for line in lines if line.startswith("[")), lines[0] if lines else "")
        Path(job["error"]).write_text(f"{type(err).__name__}: {message}"[:2000])
    finally:
        _remove_own_traces(job["token"], started)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
