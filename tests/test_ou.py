"""Okamoto–Uchiyama: a hand-checked example, round trips, the plaintext guard, homomorphic identities, wire formats."""

from __future__ import annotations

import pickle
import secrets

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sharedml.crypto import ou, parallel
from sharedml.crypto.he_scheme import HEPrivateKey, HEPublicKey
from sharedml.net import serialization

SMALL = 2**100  # plaintexts in the property tests: sums and products stay far below 2^340
SCALAR = 2**60


@pytest.fixture(scope="module")
def keys() -> tuple[ou.OUPublicKey, ou.OUPrivateKey]:
    return ou.generate_keypair(1024)


def ints(values) -> np.ndarray:
    return np.array(values, dtype=object)


def fixed_r(r: list[int]) -> np.ndarray:
    """Digits of chosen r values, in the form `_encrypt` takes them (fresh ones come from the CSPRNG)."""
    return ou._digits(r, len(r), ou._H_ROWS, ou._H_WINDOW)


def test_known_answer_tiny_key():
    # p = 11, q = 7, g = 2:  n = 11² · 7 = 847 (10 bits), |p| = 4 = ceil(10 / 3).
    # g^(p-1) mod p² = 2^10 mod 121 = 1024 - 8·121 = 56 ≠ 1, L(56) = (56 - 1) / 11 = 5, 1/5 mod 11 = 9.
    # h = 2^847 mod 847:  mod 121, 2^(847 mod 110) = 2^77 ≡ 40  (2^10 ≡ 56, 2^20 ≡ 111, 2^40 ≡ 100,
    #   2^70 ≡ 100·111·56 ≡ 23, 2^77 ≡ 23·128 ≡ 40);  mod 7, 2^(847 mod 6) = 2^1 = 2;
    #   CRT: 40 + 121·k ≡ 2 (mod 7) gives k = 2, h = 282.
    # max_plaintext = 2^(4 - 2) = 4 < 11 / 2.
    sk = ou.OUPrivateKey(11, 7, 2)
    pk = sk.public_key
    assert (pk.n, pk.h, pk.bits, pk.max_plaintext) == (847, 282, 10, 4)

    # E(3; r = 5) = 2^3 · 282^5 mod 847 = 8 · 725 mod 847 = 5800 - 6·847 = 718
    #   (282² ≡ 753, 282^4 ≡ 753² ≡ 366, 282^5 ≡ 366·282 ≡ 725).
    # E(-2; r = 1) = (2^-1)^2 · 282 = 424² · 282 = 212 · 282 mod 847 = 59784 - 70·847 = 494  (2·424 = 848 ≡ 1).
    c = pk._encrypt(ints([3, -2]), fixed_r([5, 1]))
    assert c.tolist() == [718, 494]

    # D(718): 718 mod 121 = 113 ≡ -8, (-8)^10 = 2^30 ≡ 111·56 ≡ 45, L = 4, 4·9 mod 11 = 3.
    # D(494): 494 mod 121 = 10, 10^10 ≡ 12 (10^4 ≡ 78, 10^8 ≡ 34, 34·100 ≡ 12), L = 1, 1·9 mod 11 = 9 > 11/2,
    #   so -2.
    assert sk.decrypt(ints([718, 494])).tolist() == [3, -2]

    # 718 · 494 mod 847 = 646 encrypts 3 + (-2); 718 · 2 mod 847 = 589 encrypts 3 + 1;
    # 718^-1 mod 847 = 718^-1 encrypts -3.
    assert pk.add(ints([718]), ints([494])).tolist() == [646]
    assert pk.add_plain(ints([718]), ints([1])).tolist() == [589]
    assert sk.decrypt(ints([646, 589])).tolist() == [1, 4]
    negated = pk.mul_plain(ints([718]), ints([-1]))
    assert negated[0] * 718 % 847 == 1 and sk.decrypt(negated).tolist() == [-3]

    m = ints([0, 1, -1, 4, -4])
    assert sk.decrypt(pk.encrypt(m)).tolist() == m.tolist()


def test_round_trips_public_and_key_owner(keys):
    pk, sk = keys
    m = ints(
        [0, 1, -1, pk.max_plaintext, -pk.max_plaintext, 2**64, -(2**63)]
        + [secrets.randbelow(2 * pk.max_plaintext + 1) - pk.max_plaintext for _ in range(20)]
    )
    for encrypt in (pk.encrypt, sk.encrypt):
        c = encrypt(m)
        assert c.shape == m.shape and c.dtype == object
        assert sk.decrypt(c).tolist() == m.tolist()
    assert sk.decrypt(pk.encrypt(np.arange(-6, 6, dtype=np.int64).reshape(3, 4))).tolist() == (
        np.arange(-6, 6).reshape(3, 4).tolist()
    )
    assert pk.encrypt(ints([])).shape == (0,) and sk.decrypt(pk.encrypt(ints(5))).tolist() == 5


def test_encryption_is_randomised(keys):
    pk, sk = keys
    c = pk.encrypt(ints([7, 7]))
    assert c[0] != c[1] and sk.decrypt(c).tolist() == [7, 7]


def test_plaintext_guard(keys):
    pk, sk = keys
    assert pk.max_plaintext == 2 ** (ou._prime_bits(pk.bits) - 2) == 2**340 and 2 * pk.max_plaintext < sk._p
    wrapped = pk.mul_plain(pk.encrypt(ints([pk.max_plaintext])), ints([4]))  # what the guard is there to prevent
    assert sk.decrypt(wrapped).tolist() != [4 * pk.max_plaintext]
    c = pk.encrypt(ints([1]))
    for too_big in (pk.max_plaintext + 1, -pk.max_plaintext - 1, 2**2000):
        with pytest.raises(ValueError, match="max_plaintext"):
            pk.encrypt(ints([1, too_big]))
        with pytest.raises(ValueError, match="max_plaintext"):
            pk.add_plain(c, ints([too_big]))
        with pytest.raises(ValueError, match="max_plaintext"):
            pk.mul_plain(c, ints([too_big]))
        with pytest.raises(ValueError, match="max_plaintext"):
            pk.dot(c, ints([[too_big]]))
    with pytest.raises(TypeError):
        pk.encrypt(np.array([1.5]))
    with pytest.raises(TypeError):
        pk.encrypt(ints([1.0]))


def test_2048_bit_key():
    pk, sk = ou.generate_keypair()
    assert pk.bits == 2048 and pk.max_plaintext == 2**681 and sk._p.bit_length() == 683
    m = ints([0, 1, -1, pk.max_plaintext, -pk.max_plaintext, secrets.randbits(600), -secrets.randbits(64)])
    c = pk.encrypt(m)
    assert sk.decrypt(c).tolist() == m.tolist()
    assert len(pk.ciphertexts_to_bytes(c)) == 256 * m.size


plaintexts = hnp.arrays(object, st.integers(1, 6), elements=st.integers(-SMALL, SMALL))


@settings(max_examples=20, deadline=None)
@given(a=plaintexts, data=st.data())
def test_homomorphic_identities(keys, a, data):
    pk, sk = keys
    b = data.draw(hnp.arrays(object, a.shape, elements=st.integers(-SMALL, SMALL)))
    k = data.draw(hnp.arrays(object, a.shape, elements=st.integers(-SCALAR, SCALAR)))
    scalar = data.draw(st.integers(-SCALAR, SCALAR))
    ca, cb = pk.encrypt(a), sk.encrypt(b)
    assert sk.decrypt(pk.add(ca, cb)).tolist() == (a + b).tolist()
    assert sk.decrypt(pk.add_plain(ca, b)).tolist() == (a + b).tolist()
    assert sk.decrypt(pk.mul_plain(ca, k)).tolist() == (a * k).tolist()
    assert sk.decrypt(pk.mul_plain(ca, ints(scalar))).tolist() == (a * scalar).tolist()
    assert sk.decrypt(pk.sum(ca)).tolist() == sum(a.tolist())


@settings(max_examples=15, deadline=None)
@given(
    a=hnp.arrays(object, st.tuples(st.integers(1, 3), st.integers(0, 4)), elements=st.integers(-SMALL, SMALL)),
    data=st.data(),
)
def test_sum_and_dot_match_numpy(keys, a, data):
    pk, sk = keys
    cols = data.draw(st.integers(1, 3))
    matrix = data.draw(hnp.arrays(object, (a.shape[1], cols), elements=st.integers(-SCALAR, SCALAR)))
    c = pk.encrypt(a)
    for axis in (0, 1, -1):
        assert sk.decrypt(pk.sum(c, axis=axis)).tolist() == a.sum(axis=axis).tolist()
    assert sk.decrypt(pk.dot(c, matrix)).tolist() == (a @ matrix).tolist()
    assert sk.decrypt(pk.dot(c[0], matrix)).tolist() == (a[0] @ matrix).tolist()
    assert sk.decrypt(pk.dot(c[0], matrix[:, 0])).tolist() == a[0] @ matrix[:, 0]


def test_dot_shapes_and_empty_sums(keys):
    pk, sk = keys
    c = pk.encrypt(ints([1, 2, 3]))
    assert pk.dot(c, ints([[1, 2], [3, 4], [5, 6]])).shape == (2,)
    with pytest.raises(ValueError, match="cannot multiply"):
        pk.dot(c, ints([[1, 2]]))
    assert sk.decrypt(pk.sum(c[:0])).tolist() == 0
    assert sk.decrypt(pk.sum(pk.encrypt(np.zeros((2, 0), dtype=np.int64)), axis=1)).tolist() == [0, 0]


def test_rerandomize(keys):
    pk, sk = keys
    m = ints([[5, -5], [0, pk.max_plaintext]])
    c = pk.encrypt(m)
    fresh = pk.rerandomize(c)
    assert fresh.shape == c.shape and not (fresh == c).any()
    assert sk.decrypt(fresh).tolist() == m.tolist()


def test_ciphertext_bytes(keys):
    pk, sk = keys
    m = ints([[1, -2, 3], [4, 5, -6]])
    c = pk.encrypt(m)
    data = pk.ciphertexts_to_bytes(c)
    assert len(data) == 6 * 128
    assert sk.decrypt(pk.ciphertexts_from_bytes(data, (2, 3))).tolist() == m.tolist()
    assert pk.ciphertexts_from_bytes(b"", (0, 3)).shape == (0, 3)
    width = 128
    for bad, shape in [
        (data[:-1], (2, 3)),
        (data + b"\0", (2, 3)),
        (data, (3, 3)),
        (data, (-6,)),
        (bytes(width), (1,)),  # 0 is not a ciphertext
        (int(pk.n).to_bytes(width, "little"), (1,)),  # nor is anything >= n
        (b"\xff" * width, (1,)),
    ]:
        with pytest.raises(ValueError):
            pk.ciphertexts_from_bytes(bad, shape)
    with pytest.raises(ValueError):
        pk.ciphertexts_to_bytes(ints([0]))


def test_public_key_dict(keys):
    pk, _ = keys
    data = pk.to_dict()
    assert ou.OUPublicKey.from_dict(data) == pk
    received = ou.OUPublicKey.from_dict(serialization.loads(serialization.dumps_bytes(data)))
    assert received == pk and received.h == pk.h and received.max_plaintext == pk.max_plaintext
    for bad in [
        {**data, "scheme": "paillier"},
        {"scheme": "ou", "n": data["n"]},
        {**data, "extra": 1},
        {**data, "n": str(data["n"])},
        {**data, "n": data["n"] + 1},  # even
        {**data, "g": 0},
        {**data, "g": data["n"]},
        {"scheme": "ou", "n": 2**512 + 1, "g": 3},  # too small
    ]:
        with pytest.raises(ValueError):
            ou.OUPublicKey.from_dict(bad)


def test_key_validation():
    with pytest.raises(ValueError, match="distinct primes"):
        ou.OUPrivateKey(11, 11, 2)
    with pytest.raises(ValueError, match="distinct primes"):
        ou.OUPrivateKey(15, 7, 2)
    with pytest.raises(ValueError, match="order p"):
        ou.OUPrivateKey(11, 7, 122)  # 122 ≡ 1 (mod 121)
    with pytest.raises(ValueError, match="bits"):
        ou.OUPrivateKey(11, 1009, 2)  # n = 122089 has 17 bits, so p should have 6
    with pytest.raises(ValueError, match="at least"):
        ou.generate_keypair(512)
    assert "11" not in repr(ou.OUPrivateKey(11, 7, 2))


def test_implements_the_protocol(keys):
    pk, sk = keys
    for protocol, obj in ((HEPublicKey, pk), (HEPrivateKey, sk)):
        members = set(protocol.__annotations__) | {m for m in vars(protocol) if not m.startswith("_")}
        assert all(hasattr(obj, m) for m in members)
    assert pk.scheme == "ou" and pk.bits == 1024 and sk.public_key is pk


def test_pickles_without_tables(keys):
    pk, sk = keys
    pk.encrypt(ints([1]))  # builds the tables
    assert pickle.loads(pickle.dumps(pk)) == pk and len(pickle.dumps(pk)) < 1000
    m = ints([3, -4, 5])
    assert sk.decrypt(ou._encrypt_chunk(m, pk)).tolist() == m.tolist()


@pytest.mark.slow
def test_worker_processes(keys):
    pk, sk = keys
    m = np.arange(-8, 8)
    parallel.configure(min_size=4)
    try:
        c = pk.encrypt(m)
        assert sk.decrypt(c).tolist() == m.tolist()
        assert sk.decrypt(pk.rerandomize(c)).tolist() == m.tolist()
        assert sk.decrypt(pk.mul_plain(c, -m)).tolist() == (-m * m).tolist()
        matrix = np.arange(32).reshape(16, 2) - 9
        assert sk.decrypt(pk.dot(c, matrix)).tolist() == (m @ matrix).tolist()
    finally:
        parallel.configure(min_size=parallel.DEFAULT_MIN_SIZE)
        parallel.shutdown()


@pytest.mark.parametrize("workers_min_size", [parallel.DEFAULT_MIN_SIZE, 4])
def test_precomputed_randomness_is_used_once_and_decrypts(keys, workers_min_size):
    pk, sk = keys
    parallel.configure(min_size=workers_min_size)
    try:
        pk.precompute(6)
        pk.precompute(4, background=True).join()
        assert len(pk.pool) == 10
        m = ints(list(range(-6, 6)))  # 12 plaintexts: 10 from the pool, 2 with fresh randomness
        first = pk.encrypt(m)
        assert len(pk.pool) == 0 and sk.decrypt(first).tolist() == m.tolist()
        pk.precompute(12)
        second = pk.encrypt(m)
        assert sk.decrypt(second).tolist() == m.tolist()
        assert not set(map(int, first)) & set(map(int, second))  # no randomness reused
    finally:
        parallel.configure(min_size=parallel.DEFAULT_MIN_SIZE)
        parallel.shutdown()
