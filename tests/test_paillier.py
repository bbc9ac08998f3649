"""Paillier: known answers against phe, round trips, homomorphic identities, pool, wire form, parallel path."""

from __future__ import annotations

import pickle

import gmpy2
import numpy as np
import phe
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharedml.crypto import paillier, parallel
from sharedml.crypto.he_scheme import HEPrivateKey, HEPublicKey
from sharedml.net.serialization import dumps_bytes, loads

pytestmark = pytest.mark.filterwarnings("ignore:.*for tests only:UserWarning")
PROPERTY = settings(max_examples=20, deadline=None)
HALF = 2**1021  # below max_plaintext / 2 of any 1024-bit key (n >= 2^1023)
ints = st.integers(-HALF, HALF)


def objects(values) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


def phe_keys(sk: paillier.PaillierPrivateKey) -> tuple[phe.PaillierPublicKey, phe.PaillierPrivateKey]:
    public = phe.PaillierPublicKey(int(sk.public_key.n))
    return public, phe.PaillierPrivateKey(public, int(sk.p), int(sk.q))


def test_implements_protocol(pk, sk):
    public: HEPublicKey = pk
    private: HEPrivateKey = sk
    assert (public.scheme, public.bits) == ("paillier", 1024)
    assert public.max_plaintext == (pk.n - 1) // 2
    assert private.public_key is pk


def test_key_generation(paillier_keys):
    pk, sk = paillier_keys
    assert pk.n == sk.p * sk.q and pk.n.bit_length() == 1024
    assert sk.p != sk.q and sk.p.bit_length() == sk.q.bit_length() == 512
    assert sk.p % 4 == sk.q % 4 == 3 and gmpy2.gcd(sk.p - 1, sk.q - 1) == 2
    assert gmpy2.is_prime(sk.p) and gmpy2.is_prime(sk.q)
    assert gmpy2.jacobi(pk.h_s % pk.n, pk.n) == 1  # h = -x² has Jacobi symbol 1 (p ≡ q ≡ 3 mod 4)


@pytest.mark.parametrize("bits", [512, 1023, 4096, 2050])
def test_key_sizes_refused(bits):
    with pytest.raises(ValueError, match="2048 or 3072"):
        paillier.generate_keypair(bits)


def test_known_answers_against_phe(pk, sk):
    phe_public, phe_private = phe_keys(sk)
    assert {phe_private.p: phe_private.hp, phe_private.q: phe_private.hq} == {sk.p: sk._hp, sk.q: sk._hq}
    values = [0, 1, -1, 42, -(10**30), pk.max_plaintext, -pk.max_plaintext]
    ours = sk.encrypt(objects(values))
    ours_public = pk.encrypt(objects(values))
    for value, c, c_public in zip(values, ours, ours_public, strict=True):
        assert phe_private.raw_decrypt(int(c)) == value % pk.n
        assert phe_private.raw_decrypt(int(c_public)) == value % pk.n
    theirs = objects([gmpy2.mpz(phe_public.raw_encrypt(v % int(pk.n))) for v in values])
    assert sk.decrypt(theirs).tolist() == values


def test_2048_bit_keys_interoperate_with_phe():
    pk, sk = paillier.generate_keypair()
    assert pk.bits == 2048 and pk.to_dict()["n"].bit_length() == 2048
    phe_public, phe_private = phe_keys(sk)
    values = objects([0, -1, pk.max_plaintext, 123456789])
    assert [phe_private.raw_decrypt(int(c)) for c in sk.encrypt(values)] == [v % int(pk.n) for v in values]
    assert sk.decrypt(objects([phe_public.raw_encrypt(v % int(pk.n)) for v in values])).tolist() == values.tolist()
    assert len(pk.ciphertexts_to_bytes(sk.encrypt(values))) == 4 * 512


@pytest.mark.parametrize("shape", [(), (0,), (3,), (2, 3), (2, 0, 4)])
def test_round_trip_shapes(pk, sk, shape):
    rng = np.random.default_rng(1)
    values = np.asarray(rng.integers(-(2**62), 2**62, size=shape), dtype=object)
    for encrypt in (pk.encrypt, sk.encrypt):
        c = encrypt(values)
        assert c.shape == values.shape and c.dtype == object
        assert sk.decrypt(c).shape == values.shape
        assert np.array_equal(sk.decrypt(c), values)


def test_round_trip_edge_values(pk, sk):
    big = int.from_bytes(np.random.default_rng(2).bytes(127), "big")
    values = objects([0, 1, -1, 2, -2, pk.max_plaintext, -pk.max_plaintext, pk.max_plaintext - 1, big, -big])
    for encrypt in (pk.encrypt, sk.encrypt):
        assert sk.decrypt(encrypt(values)).tolist() == values.tolist()
    assert all(type(v) is int for v in sk.decrypt(pk.encrypt(values)))
    assert sk.decrypt(pk.encrypt(np.array([7, -7], dtype=np.int32))).tolist() == [7, -7]


def test_encrypt_refuses_floats_and_out_of_range(pk, sk):
    with pytest.raises(TypeError, match="integers"):
        pk.encrypt(np.array([1.5]))
    with pytest.raises(TypeError, match="integers"):
        sk.encrypt(objects([1, 2.0]))
    for value in (pk.max_plaintext + 1, -pk.max_plaintext - 1):
        with pytest.raises(OverflowError, match="max_plaintext"):
            pk.encrypt(objects([value]))
    with pytest.raises(OverflowError):
        pk.add_plain(pk.encrypt(objects([0])), objects([pk.n]))


def test_ciphertexts_are_randomised(pk, sk):
    zeros = np.zeros(4, dtype=np.int64)
    cts = [*pk.encrypt(zeros), *sk.encrypt(zeros)]
    assert len(set(cts)) == len(cts) and all(c != 1 for c in cts)


def test_public_and_key_owner_randomness_are_the_same_function_of_r(pk, sk, monkeypatch):
    digits = paillier._random_digits(5)
    monkeypatch.setattr(paillier, "_random_digits", lambda count: digits[:count])
    r = [sum(int(d) << (paillier.WINDOW_BITS * i) for i, d in enumerate(row)) for row in digits]
    assert all(0 <= x < 2**paillier.RANDOM_BITS for x in r)
    expected = [gmpy2.powmod(pk.h_s, x, pk.nsquare) for x in r]
    assert pk._fresh_randomness_serial(5).tolist() == expected
    assert sk._fresh_randomness_serial(5).tolist() == expected
    assert pk.encrypt(objects([9] * 5)).tolist() == sk.encrypt(objects([9] * 5)).tolist()


def test_random_digits_use_every_bit():
    digits = paillier._random_digits(400)
    assert digits.shape == (400, -(-paillier.RANDOM_BITS // paillier.WINDOW_BITS))
    assert digits.min() >= 0 and digits.max() < 2**paillier.WINDOW_BITS
    top_bits = paillier.RANDOM_BITS - paillier.WINDOW_BITS * (digits.shape[1] - 1)
    assert digits[:, -1].max() < 2**top_bits and digits[:, -1].max() >= 2 ** (top_bits - 1)


@PROPERTY
@given(a=ints, b=ints)
def test_add(pk, sk, a, b):
    c = pk.add(pk.encrypt(objects([a])), sk.encrypt(objects([b])))
    assert sk.decrypt(c).tolist() == [a + b]


@PROPERTY
@given(a=ints, b=ints)
def test_add_plain(pk, sk, a, b):
    assert sk.decrypt(pk.add_plain(pk.encrypt(objects([a])), objects([b]))).tolist() == [a + b]


@PROPERTY
@given(a=st.integers(-(2**600), 2**600), k=st.integers(-(2**400), 2**400))
def test_mul_plain(pk, sk, a, k):
    assert sk.decrypt(pk.mul_plain(sk.encrypt(objects([a])), objects([k]))).tolist() == [a * k]


@PROPERTY
@given(values=st.lists(st.integers(-(2**64), 2**64), min_size=1, max_size=12), k=st.integers(-50, 50))
def test_broadcasting_and_sum(pk, sk, values, k):
    c = pk.encrypt(objects(values))
    assert sk.decrypt(pk.mul_plain(c, np.array(k))).tolist() == [v * k for v in values]
    assert sk.decrypt(pk.add_plain(c, np.array(k))).tolist() == [v + k for v in values]
    assert sk.decrypt(pk.sum(c)) == sum(values)


@PROPERTY
@given(
    rows=st.integers(1, 3),
    inner=st.integers(1, 4),
    cols=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_dot_matches_numpy(pk, sk, rows, inner, cols, seed):
    rng = np.random.default_rng(seed)
    a = np.asarray(rng.integers(-(2**40), 2**40, size=(rows, inner)), dtype=object)
    w = np.asarray(rng.integers(-3, 4, size=(inner, cols)), dtype=object) * (2**30)
    c = sk.encrypt(a)
    assert np.array_equal(sk.decrypt(pk.dot(c, w)), a @ w)
    assert np.array_equal(sk.decrypt(pk.dot(c[0], w)), a[0] @ w)
    assert np.array_equal(sk.decrypt(pk.dot(c, w[:, 0])), a @ w[:, 0])


def test_dot_shape_mismatch(pk):
    with pytest.raises(ValueError, match="shape"):
        pk.dot(pk.encrypt(np.arange(3)), np.ones((2, 2), dtype=int))


def test_sum_along_axes(pk, sk):
    values = np.arange(-12, 12).reshape(2, 3, 4).astype(object)
    c = pk.encrypt(values)
    for axis in (0, 1, 2, -1):
        assert np.array_equal(sk.decrypt(pk.sum(c, axis=axis)), values.sum(axis=axis))
    assert sk.decrypt(pk.sum(c)) == values.sum()
    assert sk.decrypt(pk.sum(c[:, :0], axis=1)).tolist() == [[0] * 4] * 2


@PROPERTY
@given(values=st.lists(ints, min_size=1, max_size=5))
def test_rerandomize(pk, sk, values):
    c = sk.encrypt(objects(values))
    fresh = pk.rerandomize(c)
    assert all(x != y for x, y in zip(c, fresh, strict=True))
    assert sk.decrypt(fresh).tolist() == values


def test_pool_values_are_used_once(pk, sk):
    assert len(pk.pool) == 0
    pk.precompute(6)
    pooled = list(pk.pool._values)
    assert len(pooled) == 6
    first = pk.encrypt(np.zeros(4, dtype=int))  # E(0) is the randomness factor itself
    assert first.tolist() == pooled[:4] and len(pk.pool) == 2
    second = sk.encrypt(np.zeros(5, dtype=int))  # 2 pooled, 3 fresh
    assert second.tolist()[:2] == pooled[4:] and len(pk.pool) == 0
    later = [*pk.encrypt(np.zeros(6, dtype=int)), *pk.rerandomize(first)]
    assert not set(later) & set(pooled)
    assert len(set(first.tolist() + second.tolist() + later)) == 4 + 5 + len(later)


def test_pool_background_fill_and_pickles_leave_it_behind(pk, sk):
    thread = sk.precompute(5, background=True)
    thread.join(timeout=30)
    assert len(pk.pool) == 5 and sk.decrypt(pk.encrypt(np.arange(5))).tolist() == list(range(5))
    assert len(pk.pool) == 0
    pk.precompute(3)
    restored = pickle.loads(pickle.dumps(pk))
    assert restored == pk and len(restored.pool) == 0 and len(pk.pool) == 3
    assert sk.decrypt(restored.encrypt(objects([5]))).tolist() == [5]
    pk.pool.take(3)


def test_private_key_pickles_for_workers_and_hides_secrets_in_repr(pk, sk):
    restored = pickle.loads(pickle.dumps(sk))
    assert restored.decrypt(pk.encrypt(objects([-3]))).tolist() == [-3]
    assert str(sk.p) not in repr(sk) and str(sk.q) not in repr(sk)


def test_ciphertext_bytes_are_fixed_width(pk, sk):
    c = pk.encrypt(np.arange(-3, 3).reshape(2, 3))
    small = pk.mul_plain(pk.encrypt(objects([0])), objects([0]))  # the trivial ciphertext 1
    data = pk.ciphertexts_to_bytes(c)
    assert len(data) == 6 * 256 and len(pk.ciphertexts_to_bytes(small)) == 256
    back = pk.ciphertexts_from_bytes(data, (2, 3))
    assert back.tolist() == c.tolist()
    wire = loads(dumps_bytes({"shape": c.shape, "data": data, "key": pk.to_dict()}))
    key = paillier.PaillierPublicKey.from_dict(wire["key"])
    assert key == pk
    assert sk.decrypt(key.ciphertexts_from_bytes(wire["data"], wire["shape"])).tolist() == [[-3, -2, -1], [0, 1, 2]]


@pytest.mark.parametrize(
    ("data", "shape"),
    [
        (b"\x00" * 255, (1,)),
        (b"\x00" * 256, (2,)),
        (b"\x00" * 256, (1,)),  # 0 is not a ciphertext
        (b"\xff" * 256, (1,)),  # >= n²
        (b"", (-1,)),
        (b"", ("a",)),
    ],
)
def test_ciphertexts_from_bytes_rejects_malformed(pk, data, shape):
    with pytest.raises(ValueError):
        pk.ciphertexts_from_bytes(data, shape)


def test_public_key_from_dict_rejects_malformed(pk):
    good = pk.to_dict()
    assert paillier.PaillierPublicKey.from_dict(good) == pk
    bad = [
        {**good, "scheme": "ou"},
        {**good, "n": good["n"] + 1},
        {**good, "n": float(good["n"])},
        {**good, "h_s": 0},
        {**good, "h_s": good["n"] ** 2},
        {**good, "h_s": good["n"]},
        {**good, "n": 2**512 + 1},
        "not a dict",
    ]
    for data in bad:
        with pytest.raises(ValueError):
            paillier.PaillierPublicKey.from_dict(data)


@pytest.mark.slow
def test_parallel_path_matches_serial(pk, sk):
    rng = np.random.default_rng(3)
    values = np.asarray(rng.integers(-(2**60), 2**60, size=40), dtype=object)
    scalars = np.asarray(rng.integers(-(2**20), 2**20, size=40), dtype=object)
    matrix = np.asarray(rng.integers(-9, 10, size=(40, 3)), dtype=object)
    c = sk.encrypt(values)
    serial = (sk.decrypt(c), pk.mul_plain(c, scalars), pk.dot(c, matrix))
    workers = parallel.workers()
    parallel.configure(workers=2, min_size=8)
    try:
        assert parallel.enabled(40)
        in_parallel = (sk.decrypt(c), pk.mul_plain(c, scalars), pk.dot(c, matrix))
        for encrypt in (pk.encrypt, sk.encrypt, lambda v: pk.rerandomize(c)):
            assert sk.decrypt(encrypt(values)).tolist() == values.tolist()
        pk.precompute(20)
        assert len(pk.pool) == 20 and sk.decrypt(pk.encrypt(values)).tolist() == values.tolist()
    finally:
        parallel.shutdown()
        parallel.configure(workers=workers, min_size=parallel.DEFAULT_MIN_SIZE)
    for a, b in zip(serial, in_parallel, strict=True):
        assert a.tolist() == b.tolist()
    assert serial[0].tolist() == values.tolist()
    assert sk.decrypt(serial[2]).tolist() == (values @ matrix).tolist()
