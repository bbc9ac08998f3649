"""`sharedml tee ...`: the data owner's, recipient's and operator's commands for the TEE route."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ..cli_errors import fail
from .attestation import provider_named, verify_quote
from .enclave import Enclave, EnclaveConfig
from .errors import TeeError
from .keys import read_private_key, write_keypair
from .measurement import code_measurement, measured_files
from .owner import encrypt_file
from .owner_policy import load_policy
from .quotes import Quote, TrustSettings, VerificationResult
from .release import decrypt_model
from .sealed import DEFAULT_CHUNK_SIZE

app = typer.Typer(help="TEE route: attested enclaves, encrypted data, enclave training.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
console = Console()
# Owner-only files (0600; folders 0700 through the umask), like the rest of the project. Declared here rather
# than imported from jobs/: they decide who may read what the enclave writes, so they belong in measured code
# (only tee/ is measured, see measurement.py).
PRIVATE_MODE = 0o600
PRIVATE_UMASK = 0o077


def _read_quote(path: Path) -> Quote:
    try:
        return Quote.from_json(path.read_text(), str(path))
    except FileNotFoundError:
        fail(f"{path}: quote file not found; the enclave worker writes quote.json into its work folder")


def _write_private(path: Path, data: bytes) -> None:
    """A decrypted model is the recipient's alone: owner-only whatever the umask, also over an older file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), PRIVATE_MODE)
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _report(result: VerificationResult) -> None:
    style = "bold red" if result.insecure else "green"
    console.print(f"[{style}]{result}[/]", highlight=False)


@app.command()
def keygen(name: Annotated[str, typer.Argument(help="recipient name, e.g. risk-team")],
           out: Annotated[Path, typer.Option(help="folder for NAME.key and NAME.pub")] = Path(".")) -> None:
    """Create a recipient X25519 key pair; owners list NAME.pub under allowed_recipients."""
    try:
        private, public = write_keypair(out, name)
    except TeeError as err:
        fail(str(err))
    console.print(f"{private} (secret, keep it here) and {public}: {public.read_text().strip()}")


@app.command()
def measurement(allow_simulated_peers: bool = False, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
    """Print the simulated-provider measurement of this installation (code files + enclave config)."""
    config = EnclaveConfig(allow_simulated_peers=allow_simulated_peers, chunk_size=chunk_size)
    console.print(code_measurement(config.as_dict()).hex())
    console.print(f"measured: {', '.join(measured_files())} + config {config.as_dict()}", style="dim")


@app.command()
def quote(path: Annotated[Path, typer.Argument(help="quote.json from an enclave worker")],
          policy: Annotated[Path | None, typer.Option(help="verify against this owner policy")] = None) -> None:
    """Print an enclave's quote, and verify it against a policy if one is given."""
    try:
        parsed = _read_quote(path)
        console.print(f"provider={parsed.provider} measurement={parsed.measurement.hex()} "
                      f"public_key={parsed.public_key.hex()}", highlight=False)
        if policy is not None:
            _report(verify_quote(parsed, load_policy(policy).trust()))
    except TeeError as err:
        fail(str(err))


@app.command()
def encrypt(data: Annotated[str, typer.Argument(help="CSV file (local path or storage URL)")],
            policy: Annotated[Path, typer.Option(help="owner policy YAML")],
            quote: Annotated[Path, typer.Option(help="the enclave's quote.json")],
            output: Annotated[str, typer.Option("-o", "--output", help="encrypted file: path or storage URL")],
            chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
    """Verify the enclave's quote against the policy, then encrypt DATA to it in authenticated chunks."""
    try:
        report = encrypt_file(load_policy(policy), _read_quote(quote), data, output, chunk_size)
    except (TeeError, ValueError) as err:
        fail(str(err))
    _report(report.verification)
    console.print(f"{data} ({report.plaintext_bytes} bytes) -> {output}, key id {report.key_id.hex()}")


@app.command("decrypt-model")
def decrypt_model_command(
    release: Annotated[Path, typer.Argument(help="a .release file from the enclave")],
    key: Annotated[Path, typer.Option(help="your recipient .key file")],
    output: Annotated[Path, typer.Option("-o", "--output", help="model file (xgboost: UBJSON)")],
    allowed_measurement: Annotated[list[str], typer.Option(help="enclave measurement you accept (hex)")],
    allow_simulated: bool = False,
) -> None:
    """Check the producing enclave's quote and decrypt a model released to you."""
    try:
        trust = TrustSettings(frozenset(bytes.fromhex(m) for m in allowed_measurement),
                              allow_simulated=allow_simulated)
        opened = decrypt_model(release.read_bytes(), read_private_key(key), trust, str(release))
    except (TeeError, ValueError, OSError) as err:
        fail(str(err))
    _report(opened.verification)
    _write_private(output, opened.model.native_bytes())
    console.print(f"{opened.model.algorithm} model {opened.model_id.hex()} on {', '.join(opened.datasets)} "
                  f"({len(opened.model.features)} features) -> {output}")


@app.command()
def worker(workdir: Annotated[Path, typer.Option(help="folder for quote.json, jobs/ and out/")],
           provider: Annotated[str, typer.Option(help="gramine, or simulated (insecure, tests)")] = "gramine",
           allow_simulated_peers: bool = False) -> None:
    """Run the enclave worker: publish its quote, then run training jobs from WORKDIR/jobs (Ctrl-C stops)."""
    from .worker import serve

    os.umask(PRIVATE_UMASK)  # its quote, job states and released models are owner-only
    try:
        enclave = Enclave(provider_named(provider), EnclaveConfig(allow_simulated_peers=allow_simulated_peers))
        stop = threading.Event()
        try:
            serve(enclave, workdir, stop)
        except KeyboardInterrupt:
            stop.set()
    except TeeError as err:
        fail(str(err))


@app.command()
def serve(config: Annotated[Path, typer.Option(help="replica configuration YAML (see sharedml.tee.replica_config)")]
          ) -> None:
    """Run an enclave replica as a network service: HTTP API, cluster membership, key sync (Ctrl-C stops)."""
    from .replica_config import load_replica_config
    from .service import run_replica

    os.umask(PRIVATE_UMASK)  # whatever the replica writes is owner-only
    try:
        run_replica(load_replica_config(config))
    except TeeError as err:
        fail(str(err))


@app.command()
def cluster(listen: Annotated[str, typer.Option(help="host:port to listen on")] = "127.0.0.1:8700",
            heartbeat_timeout: Annotated[float, typer.Option(help="seconds without a heartbeat before a "
                                                                   "replica is no longer listed")] = 5.0,
            tls_cert: Annotated[Path | None, typer.Option(help="server certificate (enables HTTPS)")] = None,
            tls_key: Annotated[Path | None, typer.Option(help="its private key")] = None,
            tls_ca: Annotated[Path | None, typer.Option(help="CA that signs client certificates")] = None,
            require_client_cert: bool = False) -> None:
    """Run the (untrusted) cluster manager: replicas register and heartbeat, clients list healthy ones."""
    from pydantic import ValidationError

    from .service import run_manager
    from .tls_options import TlsOptions

    try:
        tls = TlsOptions(cert=tls_cert, key=tls_key, ca=tls_ca, require_client_cert=require_client_cert)
        tls.check_files("sharedml tee cluster")
        run_manager(listen, heartbeat_timeout, tls)
    except ValidationError as err:
        fail("; ".join(error["msg"] for error in err.errors()))
    except TeeError as err:
        fail(str(err))


if __name__ == "__main__":  # `python -m sharedml.tee.cli worker ...`, the Gramine entrypoint
    app()
