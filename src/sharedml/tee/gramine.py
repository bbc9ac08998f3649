"""Hardware quotes: the Gramine provider (inside an SGX enclave) and the SGX DCAP verifier hook.

Why: under Gramine the CPU measures the enclave (MRENCLAVE covers the manifest, which lists the hash of
every trusted file: interpreter, libraries, sharedml code) and signs a report carrying our 64 bytes of
report data; the quoting enclave turns it into a DCAP quote that anyone can check against Intel's root
with the DCAP collateral. We read fields from the quote body (SGX quote v3 layout) and delegate the
signature-chain check to a DCAP verification library, never to our own code.

The verifier hook, in order: the policy's `dcap_verify_command` (argv; the quote file path is appended;
exit status 0 means verified), else the `dcap_qvl` Python binding when importable (collateral from
`pccs_url` or Intel's PCS; only TCB status "UpToDate" is accepted). Neither → refuse with a message.
"""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import AttestationError
from .quotes import Quote, TrustSettings, report_data_for

ATTESTATION_DIR = Path("/dev/attestation")
_ATTRIBUTE_FLAGS = 96  # report body offset 48: attributes; flag bit 1 = DEBUG
_DEBUG = 0x02
_MRENCLAVE = slice(112, 144)  # 48-byte quote header, then the report body: MRENCLAVE at body offset 64
_REPORT_DATA = slice(368, 432)  # report data at body offset 320, 64 bytes
_MIN_QUOTE_SIZE = 432
_DCAP_TIMEOUT_S = 60


class GramineProvider:
    """Quotes from Gramine's /dev/attestation pseudo-files; works only inside a Gramine SGX enclave."""

    name = "gramine"

    def __init__(self, attestation_dir: Path = ATTESTATION_DIR) -> None:
        self._dir = attestation_dir

    def quote(self, public_key: bytes, config: Mapping[str, Any]) -> Quote:
        """Write report data, read the DCAP quote; `config` is measured by MRENCLAVE via the manifest."""
        if not (self._dir / "quote").exists():
            raise AttestationError(f"{self._dir}/quote not found: not running inside a Gramine SGX enclave with "
                                   "remote attestation ('sgx.remote_attestation = \"dcap\"' in the manifest); "
                                   "outside one use the 'simulated' provider (insecure, tests only)")
        report_data = report_data_for(public_key)
        (self._dir / "user_report_data").write_bytes(report_data)
        raw = (self._dir / "quote").read_bytes()
        measurement, quoted = parse_sgx_quote(raw)
        if quoted != report_data:
            raise AttestationError("the Gramine quote does not carry the report data just written; retry")
        return Quote(self.name, measurement, public_key, report_data, raw)


def parse_sgx_quote(raw: bytes) -> tuple[bytes, bytes]:
    """MRENCLAVE and report data of an SGX DCAP quote (v3 layout)."""
    if len(raw) < _MIN_QUOTE_SIZE:
        raise AttestationError(f"SGX quote too short: {len(raw)} bytes, need at least {_MIN_QUOTE_SIZE}")
    return raw[_MRENCLAVE], raw[_REPORT_DATA]


def verify_sgx_quote(quote: Quote, trust: TrustSettings) -> tuple[str, ...]:
    """Check that the quote body matches the claimed fields, then its signature chain via DCAP."""
    measurement, report_data = parse_sgx_quote(quote.evidence)
    if measurement != quote.measurement or report_data != quote.report_data:
        raise AttestationError("SGX quote body does not match the quote's measurement/report_data fields")
    if quote.evidence[_ATTRIBUTE_FLAGS] & _DEBUG:
        raise AttestationError("SGX quote is from a DEBUG enclave, whose memory the host can read; refusing it "
                               "(sign the enclave with sgx.debug = false)")
    if trust.dcap_verify_command:
        return _verify_with_command(quote.evidence, trust.dcap_verify_command)
    try:
        import dcap_qvl
    except ImportError:
        raise AttestationError("cannot verify an SGX DCAP quote: set dcap_verify_command in the policy (a "
                               "command that runs Intel's DCAP quote verification library on a quote file) "
                               "or install the dcap-qvl Python binding") from None
    return _verify_with_binding(dcap_qvl, quote.evidence, trust.pccs_url)


def _verify_with_command(raw: bytes, command: tuple[str, ...]) -> tuple[str, ...]:
    with tempfile.NamedTemporaryFile(suffix=".quote") as handle:
        handle.write(raw)
        handle.flush()
        try:
            done = subprocess.run([*command, handle.name], capture_output=True, text=True,
                                  timeout=_DCAP_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AttestationError(f"dcap_verify_command {command[0]!r} could not run: {exc}") from None
    if done.returncode != 0:
        raise AttestationError(f"DCAP verification refused the quote (exit {done.returncode}): "
                               f"{(done.stderr or done.stdout).strip()[:500]}")
    return ()


def _verify_with_binding(dcap_qvl: Any, raw: bytes, pccs_url: str | None) -> tuple[str, ...]:
    try:
        report = dcap_qvl.get_collateral_and_verify(raw, pccs_url)
        if inspect.isawaitable(report):
            report = asyncio.run(report)
    except (ValueError, RuntimeError) as exc:
        raise AttestationError(f"DCAP verification failed: {exc}") from None
    status = getattr(report, "status", None)
    if status != "UpToDate":
        raise AttestationError(f"DCAP verification: TCB status {status!r}, only 'UpToDate' is accepted")
    return ()
