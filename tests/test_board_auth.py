"""The board's accounts and sessions: hashes that verify only the right password, cookies that cannot be forged
or kept past their time, CSRF tokens bound to one login."""

from __future__ import annotations

import secrets

import pytest

from sharedml.board.auth import SessionSigner, hash_password, verify_password


def test_passwords_are_salted_scrypt_and_verify_only_themselves():
    stored = hash_password("correct horse battery")
    assert stored.startswith("scrypt$16384$8$1$") and "correct" not in stored
    assert stored != hash_password("correct horse battery")  # a fresh salt each time
    assert verify_password(stored, "correct horse battery")
    assert not verify_password(stored, "correct horse batterY")
    assert not verify_password("scrypt$1099511627776$8$1$AAAA$AAAA", "x" * 12)  # unbounded work refused
    assert not verify_password("garbage", "correct horse battery")
    with pytest.raises(ValueError, match="at least 12 characters"):
        hash_password("short")


def test_sessions_cannot_be_forged_altered_or_kept():
    signer = SessionSigner(secrets.token_bytes(32))
    cookie = signer.issue("ana", "operator")
    session = signer.verify(cookie)
    assert session is not None and (session.user, session.role) == ("ana", "operator")
    assert session.may("viewer") and session.may("operator") and not session.may("approver")
    body, mac = cookie.split(".")
    assert signer.verify(body.replace(body[5], "A" if body[5] != "A" else "B") + "." + mac) is None
    assert SessionSigner(secrets.token_bytes(32)).verify(cookie) is None  # another board's key
    assert signer.verify(signer.issue("ana", "admin", seconds=-1)) is None  # expired
    assert signer.verify(None) is None and signer.verify("a.b.c") is None and signer.verify("x" * 5000) is None
    with pytest.raises(ValueError, match="at least 32 bytes"):
        SessionSigner(b"short")


def test_csrf_tokens_belong_to_one_login():
    signer = SessionSigner(secrets.token_bytes(32))
    first, second = (signer.verify(signer.issue("ana", "viewer")) for _ in range(2))
    assert signer.check_csrf(first, signer.csrf_token(first))
    assert not signer.check_csrf(first, signer.csrf_token(second))
    assert not signer.check_csrf(first, None) and not signer.check_csrf(first, "")
