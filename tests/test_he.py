"""Fixed-point layer: round trips, float identities, overflow refused before computing, wire form, packing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharedml.crypto import he, paillier
from sharedml.crypto.fixed_point import FixedPoint
from sharedml.net.serialization import dumps_bytes, loads

pytestmark = pytest.mark.filterwarnings("ignore:.*for tests only:UserWarning")
PROPERTY = settings(max_examples=25, deadline=None)
floats = st.floats(-1e6, 1e6, allow_nan=False)


@PROPERTY
@given(x=st.floats(-1e12, 1e12, allow_nan=False), frac_bits=st.integers(0, 60))
def test_fixed_point_round_trip_within_half_ulp(x, frac_bits):
    fixed = FixedPoint(frac_bits)
    encoded = fixed.encode(x)
    assert encoded.shape == () and type(encoded.item()) is int
    assert abs(fixed.decode(encoded) - x) <= 2.0 ** -(frac_bits + 1) * (1 + 1e-9) + abs(x) * 2.0**-52


def test_fixed_point_edges():
    fixed = FixedPoint(32)
    values = np.array([0.0, -0.0, 1.0, -1.0, 2.0**-32, -(2.0**-32), 2.0**-33, 3 * 2.0**-33, 1e15, -1e15])
    assert fixed.encode(values).tolist() == [0, 0, 2**32, -(2**32), 1, -1, 0, 2, 10**15 * 2**32, -(10**15) * 2**32]
    assert np.array_equal(fixed.decode(fixed.encode(values[:6])), values[:6])
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match="NaN or infinity"):
            fixed.encode([1.0, bad])
    with pytest.raises(OverflowError):
        FixedPoint(1000).encode(1e300)
    with pytest.raises(ValueError):
        FixedPoint(-1)


@PROPERTY
@given(xs=st.lists(floats, min_size=1, max_size=6), frac_bits=st.integers(0, 48))
def test_encrypt_round_trip(pk, sk, xs, frac_bits):
    x = np.array(xs)
    for key in (pk, sk):
        enc = he.encrypt(key, x, frac_bits=frac_bits)
        assert enc.frac_bits == frac_bits and enc.bound >= np.abs(FixedPoint(frac_bits).encode(x)).max()
        assert np.abs(enc.decrypt(sk) - x).max() <= 2.0 ** -(frac_bits + 1) + np.abs(x).max() * 2.0**-52


@PROPERTY
@given(a=st.lists(floats, min_size=3, max_size=3), b=st.lists(floats, min_size=3, max_size=3), k=floats)
def test_float_identities(pk, sk, a, b, k):
    a, b = np.array(a), np.array(b)
    ea, eb = he.encrypt(pk, a), he.encrypt(sk, b, frac_bits=20)
    tolerance = 1e-6 * (1 + np.abs(a).max() + np.abs(b).max()) * (1 + abs(k))
    np.testing.assert_allclose((ea + eb).decrypt(sk), a + b, atol=tolerance)
    np.testing.assert_allclose((ea - eb).decrypt(sk), a - b, atol=tolerance)
    np.testing.assert_allclose((ea + k).decrypt(sk), a + k, atol=tolerance)
    np.testing.assert_allclose((k - ea).decrypt(sk), k - a, atol=tolerance)
    np.testing.assert_allclose((b + ea).decrypt(sk), b + a, atol=tolerance)
    np.testing.assert_allclose((ea * k).decrypt(sk), a * k, atol=tolerance)
    np.testing.assert_allclose((b * ea).decrypt(sk), b * a, atol=tolerance)
    np.testing.assert_allclose(ea.sum().decrypt(sk), a.sum(), atol=tolerance)
    np.testing.assert_allclose((-ea).decrypt(sk), -a, atol=tolerance)


def test_frac_bits_and_bounds_propagate(pk, sk):
    x = np.array([[1.5, -2.0], [0.25, 3.0]])
    enc = he.encrypt(pk, x, frac_bits=16, max_abs=4.0)
    assert enc.bound == 4 * 2**16
    product = enc * 0.5
    assert product.frac_bits == 16 + he.DEFAULT_FRAC_BITS and product.bound == 4 * 2**16 * 2**31
    assert (enc * 3).frac_bits == 16 and (enc * 3).bound == 12 * 2**16
    mixed = enc + he.encrypt(pk, x, frac_bits=20, max_abs=4.0)
    assert mixed.frac_bits == 20 and mixed.bound == 8 * 2**20
    np.testing.assert_array_equal(mixed.decrypt(sk), 2 * x)
    assert enc.sum(axis=0).bound == 2 * enc.bound and enc.sum().bound == 4 * enc.bound
    np.testing.assert_array_equal(enc.sum(axis=1).decrypt(sk), x.sum(axis=1))
    assert enc[0].shape == (2,) and enc[1, 1].decrypt(sk) == 3.0 and enc.T[0, 1].decrypt(sk) == 0.25
    assert he.encrypt(pk, [3.0, -5.0], frac_bits=0).bound == 7  # data-derived: 2^bitlen - 1
    with pytest.raises(ValueError, match="max_abs"):
        he.encrypt(pk, [5.0], max_abs=4.0)


def test_matrix_products(pk, sk):
    rng = np.random.default_rng(0)
    x, w, v = rng.normal(size=(3, 4)), rng.normal(size=(4, 2)), rng.normal(size=4)
    enc = he.encrypt(sk, x)
    np.testing.assert_allclose((enc @ w).decrypt(sk), x @ w, atol=1e-8)
    np.testing.assert_allclose((enc[0] @ w).decrypt(sk), x[0] @ w, atol=1e-8)
    np.testing.assert_allclose((enc @ v).decrypt(sk), x @ v, atol=1e-8)
    np.testing.assert_allclose((w.T @ enc.T).decrypt(sk), w.T @ x.T, atol=1e-8)
    np.testing.assert_allclose((v @ enc.T).decrypt(sk), v @ x.T, atol=1e-8)
    ints = np.array([[1, -2], [0, 3], [4, 0], [-1, -1]])
    product = enc @ ints
    assert product.frac_bits == enc.frac_bits and product.bound == enc.bound * 6
    np.testing.assert_allclose(product.decrypt(sk), x @ ints, atol=1e-8)


def test_rerandomize(pk, sk):
    enc = he.encrypt(pk, [0.5, -0.5])
    fresh = enc.rerandomize()
    assert all(a != b for a, b in zip(enc.ciphertexts, fresh.ciphertexts, strict=True))
    np.testing.assert_array_equal(fresh.decrypt(sk), [0.5, -0.5])


class Untouchable:
    """A public key whose operations must not run: the bound check comes first."""

    def __init__(self, pk):
        self.pk = pk
        self.scheme = pk.scheme
        self.max_plaintext = pk.max_plaintext

    def to_dict(self):
        return self.pk.to_dict()

    def __getattr__(self, name):
        raise AssertionError(f"{name} called although the result could overflow")


def test_overflow_is_refused_before_computing(pk):
    enc = he.encrypt(pk, [1.0, -2.0], max_abs=2.0)
    guarded = he.EncryptedArray(Untouchable(pk), enc.ciphertexts, enc.frac_bits, enc.bound)
    limit = pk.max_plaintext.bit_length()
    cases = [
        (lambda: guarded * 2 ** (limit - 33), "multiplication by a plaintext"),
        (lambda: guarded @ np.full((2, 1), 2 ** (limit - 33)), "matrix product"),
        (lambda: guarded + float(2.0 ** (limit - 32)), "adding a plaintext"),
        (lambda: guarded.mul(2.0**900, frac_bits=100), "multiplication"),
    ]
    for op, name in cases:
        with pytest.raises(OverflowError, match=name) as info:
            op()
        assert "max_plaintext" in str(info.value)
    big = he.encrypt(pk, [1.0], max_abs=2.0 ** (limit - 33))
    guarded_big = he.EncryptedArray(Untouchable(pk), big.ciphertexts, big.frac_bits, big.bound)
    with pytest.raises(OverflowError, match="addition"):
        guarded_big + guarded_big
    wide = he.EncryptedArray(Untouchable(pk), np.ones(300, dtype=object), 32, pk.max_plaintext // 256)
    with pytest.raises(OverflowError, match="sum of 300 elements"):
        wide.sum()
    with pytest.raises(OverflowError, match="max_plaintext"):
        he.encrypt(pk, [1.0], frac_bits=limit)


def test_operations_at_the_limit_still_work(pk, sk):
    limit = pk.max_plaintext
    enc = he.encrypt(pk, [1.0, -1.0], frac_bits=0, max_abs=1.0)
    scaled = enc * (limit // 2)
    assert scaled.bound == limit // 2
    total = scaled + scaled
    assert total.bound <= limit
    assert sk.decrypt(total.ciphertexts).tolist() == [2 * (limit // 2), -2 * (limit // 2)]
    with pytest.raises(OverflowError):
        total + scaled


def test_keys_must_match(pk, sk):
    other_pk, other_sk = paillier.generate_keypair(1024)
    enc = he.encrypt(pk, [1.0])
    with pytest.raises(ValueError, match="different keys"):
        enc + he.encrypt(other_pk, [1.0])
    with pytest.raises(ValueError, match="does not belong"):
        enc.decrypt(other_sk)
    with pytest.raises(TypeError, match="cannot multiply two ciphertexts"):
        enc * enc


def test_wire_round_trip(pk, sk):
    x = np.array([[1.25, -3.5, 0.0]])
    enc = he.encrypt(sk, x, frac_bits=10) * 2.0
    message = loads(dumps_bytes({"key": pk.to_dict(), "x": enc.to_wire()}))
    key = paillier.PaillierPublicKey.from_dict(message["key"])
    back = he.EncryptedArray.from_wire(message["x"], key)
    assert (back.shape, back.frac_bits, back.bound) == (enc.shape, enc.frac_bits, enc.bound)
    assert back.ciphertexts.tolist() == enc.ciphertexts.tolist()
    np.testing.assert_array_equal(back.decrypt(sk), 2 * x)


def test_from_wire_rejects_malformed(pk):
    good = he.encrypt(pk, [1.0, 2.0]).to_wire()
    bad = [
        {**good, "scheme": "ou"},
        {**good, "shape": [3]},
        {**good, "shape": "2"},
        {**good, "bound": -1},
        {**good, "bound": pk.max_plaintext + 1},
        {**good, "frac_bits": -3},
        {**good, "frac_bits": 1.5},
        {**good, "ciphertexts": good["ciphertexts"][:-1]},
        {**good, "ciphertexts": "text"},
        [good],
    ]
    for data in bad:
        with pytest.raises(ValueError):
            he.EncryptedArray.from_wire(data, pk)


def test_packer_layout(pk):
    packer = he.Packer.for_key(pk, value_bound=2**40, max_terms=1000)
    assert packer.slot_bits == (1000 * 2**40).bit_length() + 1 == 51
    assert packer.slots == pk.max_plaintext.bit_length() // 51 and packer.fits(pk)
    with pytest.raises(ValueError, match="does not fit"):
        he.Packer.for_key(pk, value_bound=2**1020, max_terms=4)
    with pytest.raises(ValueError, match="need"):
        he.Packer(slot_bits=50, slots=2, value_bound=2**40, max_terms=1000)
    with pytest.raises(OverflowError, match="value_bound"):
        packer.pack([[2**40 + 1]])
    with pytest.raises(ValueError, match="j <="):
        packer.pack(np.zeros((1, packer.slots + 1), dtype=int))
    with pytest.raises(TypeError):
        packer.pack([[0.5]])


@PROPERTY
@given(data=st.data(), terms=st.integers(1, 40), width=st.integers(1, 5))
def test_packing_sums_signed_values_at_the_limit(data, terms, width):
    value_bound = 2**33 - 1
    packer = he.Packer(slot_bits=(40 * value_bound).bit_length() + 1, slots=5, value_bound=value_bound, max_terms=40)
    extreme = st.sampled_from([value_bound, -value_bound, 0, 1, -1])
    rows = data.draw(
        st.lists(
            st.lists(extreme | st.integers(-value_bound, value_bound), min_size=width, max_size=width),
            min_size=terms,
            max_size=terms,
        )
    )
    values = np.array(rows, dtype=object)
    total = sum(packer.pack(values).tolist())
    expected = values.sum(axis=0).tolist() + [0] * (5 - width)
    assert packer.unpack(np.array(total, dtype=object), terms).tolist() == expected


def test_packed_encryption_at_the_headroom_limit(pk, sk):
    max_terms, value_bound = 16, 2**52 - 1
    packer = he.Packer.for_key(pk, value_bound, max_terms)
    assert packer.slot_bits == 57 and packer.slots == 17
    rows = np.empty((max_terms, packer.slots), dtype=object)
    rows[:] = value_bound
    rows[::2, 1::2] = -value_bound  # alternate extremes: carries and borrows across every slot boundary
    rows[:, -1] = -value_bound  # the top slot at its most negative
    enc = packer.encrypt(sk, rows)
    assert enc.shape == (max_terms,) and enc.terms == 1
    total = enc.sum()
    assert total.terms == max_terms
    assert total.decrypt(sk).tolist() == rows.sum(axis=0).tolist()
    halves = enc[: max_terms // 2].sum() + enc[max_terms // 2 :].sum()
    assert halves.terms == max_terms and halves.decrypt(sk).tolist() == rows.sum(axis=0).tolist()
    with pytest.raises(OverflowError, match="headroom for 16"):
        total + enc[:1]
    with pytest.raises(OverflowError, match="headroom for 16"):
        packer.encrypt(pk, rows[:1]).sum().__add__(total)
    with pytest.raises(OverflowError, match="headroom for 16"):
        packer.unpack(sk.decrypt(total.ciphertexts), max_terms + 1)


def test_packed_rows_and_wire(pk, sk):
    packer = he.Packer.for_key(pk, value_bound=2**20, max_terms=100)
    fixed = FixedPoint(10)
    grads = np.random.default_rng(5).uniform(-100, 100, size=(100, 2))
    enc = packer.encrypt(pk, fixed.encode(grads))
    bucket = enc[np.arange(0, 100, 3)].sum()
    message = loads(dumps_bytes(bucket.rerandomize().to_wire()))
    back = he.PackedArray.from_wire(message, pk, packer)
    assert back.terms == 34
    sums = back.decrypt(sk)[:2]
    np.testing.assert_allclose(fixed.decode(sums), grads[::3].sum(axis=0), atol=34 * 2.0**-11)
    with pytest.raises(OverflowError):
        he.PackedArray.from_wire({**message, "terms": 101}, pk, packer)
    with pytest.raises(ValueError):
        he.PackedArray.from_wire({**message, "terms": "1"}, pk, packer)
