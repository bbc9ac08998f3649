"""Federation certificates: one CA per federation, one key + certificate per party.

Mutual TLS between parties rests on these: a node accepts a connection only when the peer's
certificate chains to the federation CA, and then only when the certificate's common name is a
party of the job (checked by the transport). Keys are ECDSA P-256 (128-bit security), which every
gRPC/BoringSSL build accepts for TLS 1.2 and 1.3.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PARTY_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
CA_KEY, CA_CERT = "ca.key", "ca.crt"
CA_VALIDITY_DAYS = 3650
PARTY_VALIDITY_DAYS = 825


@dataclass(frozen=True)
class Identity:
    """What a party needs for mutual TLS: its own key and certificate, and the federation CA."""

    party: str
    key_pem: bytes
    cert_pem: bytes
    ca_pem: bytes


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sharedml federation"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def create_ca(name: str = "sharedml-federation-ca") -> tuple[bytes, bytes]:
    """Return (key_pem, cert_pem) of a new self-signed federation CA."""
    key = _new_key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _key_pem(key), _cert_pem(cert)


def issue_party_cert(party: str, ca_key_pem: bytes, ca_cert_pem: bytes,
                     hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> tuple[bytes, bytes]:
    """Return (key_pem, cert_pem) for `party`, signed by the CA.

    The party name is the common name and a DNS subject-alternative name, so peers can both verify
    the server by name (TLS target name) and read the client's identity from its certificate.
    """
    if not PARTY_NAME.match(party):
        raise ValueError(f"invalid party name {party!r}: use letters, digits, '_' or '-', starting with a letter")
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    key = _new_key()
    now = dt.datetime.now(dt.UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName(party)]
    for host in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(party))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=PARTY_VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return _key_pem(key), _cert_pem(cert)


def _write(path: Path, data: bytes) -> None:
    """Owner-only (0600), like every file the project writes: certificates are public, but no one else on the
    machine needs them, and a party's key must stay its own."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)  # O_EXCL below: the file is created with our mode, not a leftover's
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def init_federation(parties: list[str], out_dir: Path) -> dict[str, Identity]:
    """Create `ca.key`, `ca.crt` and `<party>.key`, `<party>.crt` for every party under out_dir.

    An existing CA in out_dir is reused, so parties can be added to a federation later.
    """
    if len(set(parties)) != len(parties):
        raise ValueError(f"duplicate party names in {parties}")
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_key_path, ca_cert_path = out_dir / CA_KEY, out_dir / CA_CERT
    if ca_key_path.exists() and ca_cert_path.exists():
        ca_key, ca_cert = ca_key_path.read_bytes(), ca_cert_path.read_bytes()
    else:
        ca_key, ca_cert = create_ca()
        _write(ca_key_path, ca_key)
        _write(ca_cert_path, ca_cert)
    identities = {}
    for party in parties:
        key, cert = issue_party_cert(party, ca_key, ca_cert)
        _write(out_dir / f"{party}.key", key)
        _write(out_dir / f"{party}.crt", cert)
        identities[party] = Identity(party, key, cert, ca_cert)
    return identities


def load_identity(cert_dir: Path, party: str) -> Identity:
    """Read a party's identity written by `init_federation` (or `sharedml certs init`)."""
    paths = {"key": cert_dir / f"{party}.key", "cert": cert_dir / f"{party}.crt", "ca": cert_dir / CA_CERT}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise FileNotFoundError(
            f"certificates for party {party!r} not found: missing {', '.join(missing)}; "
            f"create them with `sharedml certs init --parties ... --out {cert_dir}`"
        )
    return Identity(party, paths["key"].read_bytes(), paths["cert"].read_bytes(), paths["ca"].read_bytes())


def common_name(cert_pem: bytes) -> str:
    """The common name of a PEM certificate (the party it was issued to)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
