"""Key agreement, AEAD, signatures and the seeded stream: standard test vectors and properties."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from hypothesis import given, settings
from hypothesis import strategies as st

from sharedml.crypto import aead, kex, signing
from sharedml.crypto.prg import SeededStream

h = bytes.fromhex

# --- X25519 + HKDF ------------------------------------------------------------------------------

RFC7748_ALICE = h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
RFC7748_ALICE_PUB = h("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
RFC7748_BOB = h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
RFC7748_BOB_PUB = h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
RFC7748_SHARED = h("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")

LOW_ORDER_POINTS = [  # RFC 7748 section 7 / libsodium's list: 0, 1, two points of order 8, p - 1, p, p + 1
    "00" * 32,
    "01" + "00" * 31,
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ec" + "ff" * 30 + "7f",
    "ed" + "ff" * 30 + "7f",
    "ee" + "ff" * 30 + "7f",
]


def test_hkdf_rfc5869_vectors():
    okm1 = kex.hkdf_sha256(b"\x0b" * 22, salt=bytes(range(13)), info=bytes(range(0xF0, 0xFA)), length=42)
    assert okm1 == h("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")
    okm3 = kex.hkdf_sha256(b"\x0b" * 22, info=b"", length=42)  # test case 3: no salt, no info
    assert okm3 == h("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8")


def test_x25519_rfc7748_vector_through_shared_key():
    alice, bob = kex.load_private_key(RFC7748_ALICE), kex.load_private_key(RFC7748_BOB)
    assert kex.public_key_bytes(alice) == RFC7748_ALICE_PUB
    assert kex.public_key_bytes(bob) == RFC7748_BOB_PUB
    expected = kex.hkdf_sha256(RFC7748_SHARED, info=b"test", salt=b"salt")
    assert kex.shared_key(alice, RFC7748_BOB_PUB, info=b"test", salt=b"salt") == expected
    assert kex.shared_key(bob, kex.load_public_key(RFC7748_ALICE_PUB), info=b"test", salt=b"salt") == expected


def test_shared_key_agrees_and_separates_purposes():
    a, b = kex.generate_private_key(), kex.generate_private_key()
    key = kex.shared_key(a, kex.public_key_bytes(b), info=b"mask")
    assert key == kex.shared_key(b, kex.public_key_bytes(a), info=b"mask") and len(key) == 32
    assert key != kex.shared_key(a, kex.public_key_bytes(b), info=b"tee-data-key")
    assert key != kex.shared_key(a, kex.public_key_bytes(b), info=b"mask", salt=b"job-2")
    assert len(kex.shared_key(a, kex.public_key_bytes(b), info=b"mask", length=64)) == 64
    third = kex.generate_private_key()
    assert key != kex.shared_key(a, kex.public_key_bytes(third), info=b"mask")


@pytest.mark.parametrize("point", LOW_ORDER_POINTS)
def test_low_order_points_are_rejected(point):
    with pytest.raises(ValueError, match="low-order"):
        kex.shared_key(kex.generate_private_key(), h(point), info=b"mask")


def test_kex_key_serialization_round_trip_and_checks():
    key = kex.generate_private_key()
    again = kex.load_private_key(kex.private_key_bytes(key))
    assert kex.public_key_bytes(again) == kex.public_key_bytes(key)
    assert kex.public_key_bytes(kex.load_public_key(kex.public_key_bytes(key))) == kex.public_key_bytes(key)
    with pytest.raises(ValueError, match="32 bytes"):
        kex.load_public_key(bytes(31))
    with pytest.raises(ValueError, match="32 bytes"):
        kex.load_private_key(bytes(33))
    with pytest.raises(ValueError, match="info"):
        kex.shared_key(key, kex.public_key_bytes(key), info=b"")


# --- AES-256-GCM ----------------------------------------------------------------------------------


def test_aes_gcm_known_answer():
    """Test case 16 of McGrew & Viega's GCM specification (256-bit key, 96-bit IV, with AAD)."""
    key = h("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
    plaintext = h(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
        "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
    )
    aad = h("feedfacedeadbeeffeedfacedeadbeefabaddad2")
    nonce = h("cafebabefacedbaddecaf888")
    ciphertext = h(
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
        "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
    )
    tag = h("76fc6ece0f4e1768cddf8853bb2d551b")
    assert aead.open_(key, nonce + ciphertext + tag, aad) == plaintext


def test_seal_round_trip_and_fresh_nonces():
    key = aead.generate_key()
    sealed = aead.seal(key, b"model update", b"job-1|alice")
    assert len(sealed) == aead.NONCE_SIZE + len(b"model update") + aead.TAG_SIZE
    assert aead.open_(key, sealed, b"job-1|alice") == b"model update"
    assert aead.seal(key, b"model update", b"job-1|alice") != sealed
    assert aead.open_(key, aead.seal(key, b"")) == b""


def test_any_tampering_raises_decryption_error():
    key = aead.generate_key()
    sealed = aead.seal(key, b"secret payload", b"aad")
    for i in range(len(sealed)):  # one flipped bit anywhere: nonce, ciphertext or tag
        tampered = bytearray(sealed)
        tampered[i] ^= 0x01
        with pytest.raises(aead.DecryptionError):
            aead.open_(key, bytes(tampered), b"aad")
    for bad in [
        lambda: aead.open_(key, sealed, b"other aad"),
        lambda: aead.open_(aead.generate_key(), sealed, b"aad"),
        lambda: aead.open_(key, sealed[:-1], b"aad"),
        lambda: aead.open_(key, sealed[: aead.NONCE_SIZE + aead.TAG_SIZE - 1], b"aad"),
    ]:
        with pytest.raises(aead.DecryptionError):
            bad()
    with pytest.raises(ValueError, match="32 bytes"):
        aead.seal(bytes(16), b"x")


# --- Ed25519 --------------------------------------------------------------------------------------

RFC8032_VECTORS = [  # (secret key, public key, message, signature): RFC 8032 section 7.1, tests 1 and 2
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
]


@pytest.mark.parametrize(("secret", "public", "message", "signature"), RFC8032_VECTORS)
def test_ed25519_rfc8032_vectors(secret, public, message, signature):
    key = signing.load_private_key(h(secret))
    assert signing.public_key_bytes(key) == h(public)
    assert signing.sign(key, h(message)) == h(signature)
    signing.verify(h(public), h(message), h(signature))


def test_verify_rejects_wrong_message_key_and_signature():
    key = signing.generate_private_key()
    public = signing.public_key_bytes(key)
    signature = signing.sign(key, b"public key of alice")
    signing.verify(signing.load_public_key(public), b"public key of alice", signature)
    bad = bytearray(signature)
    bad[0] ^= 1
    for args in [
        (public, b"public key of mallory", signature),
        (signing.public_key_bytes(signing.generate_private_key()), b"public key of alice", signature),
        (public, b"public key of alice", bytes(bad)),
        (public, b"public key of alice", signature[:-1]),
    ]:
        with pytest.raises(signing.SignatureError):
            signing.verify(*args)
    assert issubclass(signing.SignatureError, InvalidSignature)
    assert signing.public_key_bytes(signing.load_private_key(signing.private_key_bytes(key))) == public


# --- Seeded ChaCha20 stream -----------------------------------------------------------------------

RFC8439_BLOCKS_0_AND_1 = h(  # RFC 8439 A.1 test vectors 1 and 2: zero key, zero nonce, counters 0 and 1
    "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
    "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586"
    "9f07e7be5551387a98ba977c732d080dcb0f29a048e3656912c6533e32ee7aed"
    "29b721769ce64e43d57133b074d839d531ed1f28510afb45ace10a1f4b794d6f"
)


def test_stream_is_rfc8439_chacha20():
    assert SeededStream(bytes(32)).bytes(128) == RFC8439_BLOCKS_0_AND_1
    seed = bytes(range(32))
    nonce = hashlib.sha256(b"sharedml.prg.domain\0masks").digest()[:12]
    reference = Cipher(algorithms.ChaCha20(seed, bytes(4) + nonce), mode=None).encryptor().update(bytes(1000))
    assert SeededStream(seed, domain=b"masks").bytes(1000) == reference


def test_stream_is_deterministic_and_reads_continue():
    seed = bytes(range(32))
    whole = SeededStream(seed, domain=b"d").bytes(8 * 1003)
    parts = SeededStream(seed, domain=b"d")
    assert parts.bytes(5) + parts.bytes(3) == whole[:8]
    assert parts.uint64(1000).tobytes() == whole[8:8008]  # little-endian words of the same stream
    assert parts.position == 8008
    grid = SeededStream(seed, domain=b"d").uint64((4, 5))
    assert grid.shape == (4, 5) and np.array_equal(grid, SeededStream(seed, domain=b"d").uint64((4, 5)))


def test_domains_separate_streams():
    seed = bytes(range(32))
    firsts = {SeededStream(seed, domain=d).bytes(32) for d in [b"", b"a", b"b", b"mask|alice|bob", b"mask|bob|alice"]}
    assert len(firsts) == 5


def test_every_seed_bit_matters():
    seed = bytes(range(32))
    outputs = {SeededStream(seed).bytes(32)}
    for i in range(256):
        flipped = bytearray(seed)
        flipped[i // 8] ^= 1 << (i % 8)
        outputs.add(SeededStream(bytes(flipped)).bytes(32))
    assert len(outputs) == 257
    same_prefix = [bytes(4) + bytes([k]) * 28 for k in range(1, 5)] + [bytes(31) + b"\x01", bytes(32)]
    assert len({SeededStream(s).uint64(4).tobytes() for s in same_prefix}) == len(same_prefix)


def test_seed_must_be_32_bytes():
    for bad in [bytes(16), bytes(31), bytes(33), b""]:
        with pytest.raises(ValueError, match="32 bytes"):
            SeededStream(bad)
    with pytest.raises(TypeError):
        SeededStream("0" * 32)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        SeededStream(12345)  # type: ignore[arg-type]


def test_uint64_statistics():
    words = SeededStream(b"\x07" * 32).uint64(200_000)
    n = words.size
    mean = np.mean(words.astype(np.float64)) / 2.0**64
    assert abs(mean - 0.5) < 6 * (1 / np.sqrt(12 * n))
    bits = np.unpackbits(words.view(np.uint8)).reshape(n, 64).mean(axis=0)
    assert np.all(np.abs(bits - 0.5) < 6 * 0.5 / np.sqrt(n))


def test_ring_widths():
    stream = SeededStream(b"\x01" * 32)
    r32, r64 = stream.ring(1000, 32), stream.ring((10, 10), 64)
    assert r32.dtype == np.uint32 and r32.shape == (1000,) and int(r32.max()) > 2**31
    assert r64.dtype == np.uint64 and r64.shape == (10, 10)
    r128 = stream.ring((50, 2), 128)
    assert r128.dtype == object and r128.shape == (50, 2)
    values = [int(v) for v in r128.ravel()]
    assert all(0 <= v < 2**128 for v in values) and max(values) > 2**127
    r256 = stream.ring(20, 256)
    assert all(0 <= int(v) < 2**256 for v in r256) and max(r256) > 2**250
    a, b = SeededStream(b"\x02" * 32), SeededStream(b"\x02" * 32)
    assert a.ring(3, 128)[0] == int.from_bytes(b.bytes(16), "little")
    with pytest.raises(ValueError):
        stream.ring(4, 96)


@settings(max_examples=60, deadline=None)
@given(bound=st.integers(min_value=1, max_value=2**200), seed=st.binary(min_size=32, max_size=32))
def test_integers_below_stays_in_range(bound, seed):
    out = SeededStream(seed).integers_below(300, bound)
    assert out.shape == (300,)
    assert out.dtype == (np.uint64 if bound <= 2**64 else object)
    assert all(0 <= int(v) < bound for v in out)


def test_integers_below_has_no_modulo_bias():
    # Reducing a 64-bit word mod 3 * 2^62 would put half of all values below 2^62 instead of a third.
    out = SeededStream(b"\x03" * 32).integers_below(300_000, 3 * 2**62)
    share = np.mean(out < np.uint64(2**62))
    assert abs(share - 1 / 3) < 6 * np.sqrt(2 / 9 / out.size)
    counts = np.bincount(SeededStream(b"\x04" * 32).integers_below(100_000, 10).astype(np.int64), minlength=10)
    assert np.all(np.abs(counts - 10_000) < 6 * np.sqrt(9_000))
    big = SeededStream(b"\x05" * 32).integers_below(4000, 3 * 2**126)
    assert abs(np.mean([int(v) < 2**126 for v in big]) - 1 / 3) < 0.05
    assert np.array_equal(SeededStream(b"\x06" * 32).integers_below((2, 3), 1), np.zeros((2, 3), np.uint64))
    with pytest.raises(ValueError):
        SeededStream(b"\x06" * 32).integers_below(3, 0)


def test_expansion_is_fast():
    stream = SeededStream(bytes(32))
    start = time.perf_counter()
    stream.uint64(2_000_000)
    assert time.perf_counter() - start < 0.5  # ~15 ms here; 10^7 words take well under a second
