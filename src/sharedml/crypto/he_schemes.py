"""Choosing an additively homomorphic scheme by name: the job parameters, key generation, a peer's key.

Why one place: every protocol that encrypts (SecureBoost, the hetero GLMs, hetero binning, dealer-free MPC
tuples) lets the job choose "ou" or "paillier" and a key size, generates a key pair of that scheme, and
turns the public key a peer sent (`to_dict()`) back into a key. Both schemes implement the interface of
`he_scheme.py`, so past these three steps no protocol needs to know which one it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, Field

from . import ou, paillier
from .he_scheme import HEPrivateKey, HEPublicKey

SchemeName = Literal["ou", "paillier"]
SCHEME_NAMES: tuple[str, ...] = get_args(SchemeName)
HEScheme = Annotated[SchemeName, Field(description="additively homomorphic scheme: ou (faster) or paillier")]
KeyBits = Annotated[int, Field(ge=1024, description="HE modulus size; below 2048 only for tests")]

_SCHEMES: dict[str, tuple[Callable[[int], tuple[Any, Any]], Any]] = {
    "ou": (ou.generate_keypair, ou.OUPublicKey),
    "paillier": (paillier.generate_keypair, paillier.PaillierPublicKey),
}


class HEParams(BaseModel):
    """The HE choice as component parameters, for the parameters of every component that encrypts."""

    he_scheme: HEScheme = "ou"
    key_bits: KeyBits = 2048


def check_scheme(scheme: str) -> None:
    """Refuse an unknown scheme name (for callers that are not validated by `HEScheme`)."""
    if scheme not in _SCHEMES:
        raise ValueError(f"unknown HE scheme {scheme!r}: use one of {', '.join(SCHEME_NAMES)}")


def generate_keypair(scheme: str, key_bits: int) -> tuple[HEPublicKey, HEPrivateKey]:
    """A fresh key pair of `scheme` with a `key_bits`-bit modulus."""
    check_scheme(scheme)
    return _SCHEMES[scheme][0](key_bits)


def public_key_from_dict(scheme: str, state: dict[str, Any]) -> HEPublicKey:
    """The `scheme` public key a peer sent as `to_dict()`; a key of another scheme is refused."""
    check_scheme(scheme)
    return _SCHEMES[scheme][1].from_dict(state)
