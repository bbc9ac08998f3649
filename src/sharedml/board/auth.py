"""Who is looking at the board: local accounts with scrypt password hashes, signed session cookies and
CSRF tokens. The pieces the coordinator's `/ui` will log people in with.

Why these choices: scrypt is in the standard library and memory-hard (n = 2^14, r = 8: 16 MiB and ~50 ms a
guess on this machine's core); a session is a small signed record (name, role, expiry, a random id) rather
than a server-side table, so the board keeps no session state and a restart logs nobody out; the HMAC key
is the board's own secret (32 bytes from the OS CSPRNG, a private file), and comparisons are constant-time.
A CSRF token is an HMAC of the session's random id, so a form posted from another site, which cannot read
the page, cannot carry it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Literal

Role = Literal["viewer", "operator", "approver", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "approver", "admin")  # each may do what the ones before may
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 14, 8, 1
SESSION_SECONDS = 8 * 3600
MIN_PASSWORD = 12  # characters


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    """`scrypt$n$r$p$salt$hash` for storing in the accounts file."""
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"a password needs at least {MIN_PASSWORD} characters")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(stored: str, password: str) -> bool:
    """Whether `password` matches `stored` (a `hash_password` result); False for anything malformed."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt" or int(n) > 1 << 20 or int(r) > 32 or int(p) > 16:  # bounded work per attempt
            return False
        expected = _unb64(digest)
        got = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(expected), maxmem=64 << 20)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


@dataclass(frozen=True)
class Session:
    user: str
    role: Role
    expires: float
    nonce: str  # random per login: what the CSRF token is bound to
    generation: str = ""  # of the account's password when the session began (login.py checks it)

    def may(self, role: Role) -> bool:
        """Whether this session's role includes `role`'s rights."""
        return ROLES.index(self.role) >= ROLES.index(role)


class SessionSigner:
    """Issues and checks session cookies and CSRF tokens with one secret key."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("the session secret needs at least 32 bytes")
        self._secret = secret

    def _mac(self, purpose: str, data: bytes) -> bytes:
        return hmac.new(self._secret, purpose.encode() + b"\0" + data, hashlib.sha256).digest()

    def issue(self, user: str, role: Role, seconds: float = SESSION_SECONDS, generation: str = "") -> str:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        body = json.dumps({"u": user, "r": role, "e": time.time() + seconds, "n": secrets.token_hex(16),
                           "g": generation}, separators=(",", ":")).encode()
        return f"{_b64(body)}.{_b64(self._mac('session', body))}"

    def verify(self, cookie: str | None) -> Session | None:
        """The session a cookie carries, or None if it is missing, forged, malformed or expired."""
        if not cookie or cookie.count(".") != 1 or len(cookie) > 4096:
            return None
        body_text, mac_text = cookie.split(".")
        try:
            body, mac = _unb64(body_text), _unb64(mac_text)
        except ValueError:
            return None
        if not hmac.compare_digest(mac, self._mac("session", body)):
            return None
        data = json.loads(body)
        session = Session(str(data["u"]), data["r"], float(data["e"]), str(data["n"]), str(data.get("g", "")))
        return session if session.role in ROLES and session.expires > time.time() else None

    def csrf_token(self, session: Session) -> str:
        return _b64(self._mac("csrf", session.nonce.encode()))

    def check_csrf(self, session: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(token.encode(), self.csrf_token(session).encode())
