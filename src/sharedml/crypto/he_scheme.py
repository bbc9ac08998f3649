"""The interface every additively homomorphic scheme (Paillier, Okamoto–Uchiyama) implements.

Schemes work on integers; fixed-point floats, overflow tracking and packing sit on top of this
interface (`sharedml.crypto.he`), so they are written once for all schemes. Plaintexts are signed:
`-max_plaintext <= m <= max_plaintext` decrypts to exactly m; anything larger wraps, which the
layer above prevents by tracking bounds. Vectors are numpy object arrays (of Python ints for
plaintexts, of gmpy2.mpz for ciphertexts), so one call handles a whole array and schemes can batch
or parallelise the big-integer work.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class HEPublicKey(Protocol):
    scheme: str  # "paillier" | "ou"
    bits: int  # modulus size in bits (2048 default)
    max_plaintext: int  # largest |m| that decrypts correctly
    ciphertext_modulus: Any  # M: adding plaintexts multiplies ciphertexts mod M (for hand-written batch kernels)

    def encrypt(self, plaintexts: np.ndarray) -> np.ndarray:
        """Encrypt signed ints with the public key only (fresh randomness from a CSPRNG)."""

    def add(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Ciphertext + ciphertext, elementwise with numpy broadcasting."""

    def add_plain(self, a: np.ndarray, plaintexts: np.ndarray) -> np.ndarray:
        """Ciphertext + signed plaintext ints."""

    def mul_plain(self, a: np.ndarray, scalars: np.ndarray) -> np.ndarray:
        """Ciphertext × signed plaintext ints."""

    def sum(self, a: np.ndarray, axis: int | None = None) -> np.ndarray:
        """Homomorphic sum along an axis (all elements when None)."""

    def dot(self, a: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """Ciphertext vector/matrix @ plaintext int matrix."""

    def rerandomize(self, a: np.ndarray) -> np.ndarray:
        """Same plaintexts, fresh randomness (unlinkable to the inputs)."""

    def ciphertexts_to_bytes(self, a: np.ndarray) -> bytes:
        """Compact fixed-width encoding of a ciphertext array (shape travels separately)."""

    def ciphertexts_from_bytes(self, data: bytes, shape: tuple[int, ...]) -> np.ndarray:
        """Inverse of `ciphertexts_to_bytes`; rejects malformed input with ValueError."""

    def to_dict(self) -> dict[str, Any]:
        """Public parameters, serializable with `sharedml.net.serialization`."""


class HEPrivateKey(Protocol):
    public_key: HEPublicKey

    def encrypt(self, plaintexts: np.ndarray) -> np.ndarray:
        """Key-owner encryption: same distribution as the public path; may use the factorisation to be faster."""

    def decrypt(self, ciphertexts: np.ndarray) -> np.ndarray:
        """Signed ints (object array) of the same shape."""
