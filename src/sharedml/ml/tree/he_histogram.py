"""A host's side of SecureBoost's histograms: sums of encrypted (g, h) per feature bin, and the split
candidates built from them, all on ciphertexts (adding plaintexts = multiplying ciphertexts mod M).

The hot loop is summing each row's ciphertext into one bin per feature: contributions are sorted by
bin and multiplied up bin by bin (`segment_products`). Features are taken two or three at a time
(`_histogram`), which cuts the number of multiplications by about that factor on large nodes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gmpy2
import numpy as np

from ...crypto import parallel

_powmod = np.frompyfunc(gmpy2.powmod, 3, 1)
ONE = gmpy2.mpz(1)  # an encryption of 0 (with randomness 1): the empty sum
PARALLEL_MIN_WORK = 5_000  # ciphertext multiplications below which worker processes cost more than they save


def segment_products(keys: np.ndarray, values: np.ndarray, modulus, n_keys: int) -> np.ndarray:
    """out[k] = product of values[keys == k] mod `modulus` (ONE where none), for k < n_keys.

    A Python loop over the key-sorted values on purpose: each step is one multiply-and-reduce whose
    4096-bit temporary is freed at once, while vectorised pairwise rounds over numpy object arrays
    allocate a whole array of temporaries per round; the loop measured 25% less CPU at 10^6 rows.
    """
    out = np.full(n_keys, ONE, dtype=object)
    if not len(keys):
        return out
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    ordered = values[order].tolist()
    products = []
    for start, stop in zip(starts.tolist(), starts[1:].tolist() + [len(ordered)], strict=True):
        product = ordered[start]
        for value in ordered[start + 1:stop]:
            product = product * value % modulus
        products.append(product)
    out[sorted_keys[starts]] = products
    return out


@dataclass(frozen=True)
class WireRows:
    """The guest's per-row ciphertexts as they arrived: fixed-width bytes, one row each.

    Rows are parsed into integers only where a histogram sums them, in the worker processes for large
    nodes. So the host's main process neither parses 10^6 ciphertexts per tree nor pickles them to its
    workers at every level (both serial, about 8 µs a row together); it sends each worker its rows'
    bytes, a plain copy.
    """

    raw: np.ndarray  # (rows, bytes per ciphertext) uint8
    parse: Callable[[bytes, tuple[int, ...]], np.ndarray]  # a public key's ciphertexts_from_bytes

    @classmethod
    def from_wire(cls, data: bytes, rows: int, parse: Callable[[bytes, tuple[int, ...]], np.ndarray]) -> WireRows:
        if (rows == 0 and len(data)) or (rows and len(data) % rows):
            raise ValueError(f"{len(data)} bytes of ciphertexts do not split into {rows} rows of equal width")
        return cls(np.frombuffer(data, dtype=np.uint8).reshape(rows, len(data) // max(rows, 1)), parse)

    def subset(self, rows: np.ndarray) -> WireRows:
        return WireRows(self.raw[rows], self.parse)

    def values(self) -> np.ndarray:
        """The ciphertexts as integers (the key's parser checks each one's range)."""
        return self.parse(self.raw.tobytes(), (len(self.raw),))


def encrypted_histogram(ciphertexts: WireRows, codes: np.ndarray, rows: np.ndarray, width: int,
                        modulus) -> np.ndarray:
    """(f, width) ciphertext sums: bin b of feature j sums the rows whose code of j is b.

    Large nodes are split by rows across the worker processes (`sharedml.crypto.parallel`), whose
    partial histograms are then added: the other parties wait meanwhile, so the cores are free.
    """
    work = len(rows) * codes.shape[1]
    if work < PARALLEL_MIN_WORK or parallel.workers() < 2:
        return _wire_histogram(ciphertexts.subset(rows), codes[rows], width, modulus)
    parts = parallel.run(_wire_histogram, [(ciphertexts.subset(rows[s]), codes[rows[s]], width, modulus)
                                           for s in parallel.split(len(rows))])
    total = parts[0]
    for part in parts[1:]:
        total = total * part % modulus
    return total


def _wire_histogram(ciphertexts: WireRows, codes: np.ndarray, width: int, modulus) -> np.ndarray:
    return _histogram(ciphertexts.values(), codes, width, modulus)


def _histogram(ciphertexts: np.ndarray, codes: np.ndarray, width: int, modulus) -> np.ndarray:
    """Bin sums of a block of k features at a time: first each row's ciphertext into the group of its
    joint code on the k features (n multiplications), then each feature's bins from the groups
    (k multiplications per non-empty group). For k = 2 or 3 this needs about n·f/k multiplications
    instead of n·f, because all features sum the same row ciphertexts."""
    n, f = codes.shape
    k = _group_size(n, f, width)
    out = np.empty((f, width), dtype=object)
    for start in range(0, f, k):
        block = codes[:, start:start + k].astype(np.int64)
        if block.shape[1] == 1:
            out[start] = segment_products(block[:, 0], ciphertexts, modulus, width)
            continue
        places = width ** np.arange(block.shape[1], dtype=np.int64)
        keys = block @ places
        present = np.unique(keys)
        groups = segment_products(keys, ciphertexts, modulus, width ** block.shape[1])[present]
        for i, place in enumerate(places):
            out[start + i] = segment_products(present // place % width, groups, modulus, width)
    return out


def _group_size(n: int, f: int, width: int) -> int:
    """Features per block that minimises the multiplications of `_histogram` (a bound on them)."""
    def cost(k: int) -> int:
        return -(-f // k) * (n + k * min(width ** k, n))
    return min(range(1, min(f, 4) + 1), key=cost)


def subtract(parent: np.ndarray, child: np.ndarray, modulus) -> np.ndarray:
    """Encrypted parent − child, elementwise: the sibling's histogram without touching its rows."""
    inverse = np.array([gmpy2.invert(c, modulus) for c in child.ravel()], dtype=object).reshape(child.shape)
    return parent * inverse % modulus


@dataclass
class Candidates:
    """A node's split candidates on one party's features, as encrypted left-side sums.

    `feature`, `bin`, `default_left` describe candidate i (host-side only); `left` is its ciphertext.
    """

    feature: np.ndarray
    bin: np.ndarray
    default_left: np.ndarray
    left: np.ndarray


def split_candidates(hist: np.ndarray, has_missing: np.ndarray, n_bins: np.ndarray, modulus) -> Candidates:
    """Every candidate of `find_best_split`, as the encrypted sum of the rows it sends left.

    Missing right: left = bins 0..b (b up to the feature's last bin). Missing left (only for features
    with missing values in the node): left = total − bins b+1..last, b from the second-to-last bin
    down to −1. Bins past a feature's own bin count are empty and would only repeat a candidate.
    """
    features, bins, defaults, lefts = [], [], [], []
    for j in range(hist.shape[0]):
        k = int(n_bins[j])
        forward = np.empty(k, dtype=object)
        acc = ONE
        for b in range(k):
            acc = acc * hist[j, b] % modulus
            forward[b] = acc
        features.append(np.full(k, j))
        bins.append(np.arange(k))
        defaults.append(np.zeros(k, dtype=bool))
        lefts.append(forward)
        if has_missing[j]:
            total = forward[-1] * hist[j, -1] % modulus
            right = ONE
            backward = np.empty(k, dtype=object)
            for i, b in enumerate(range(k - 2, -2, -1)):
                right = right * hist[j, b + 1] % modulus
                backward[i] = total * gmpy2.invert(right, modulus) % modulus
            features.append(np.full(k, j))
            bins.append(np.arange(k - 2, -2, -1))
            defaults.append(np.ones(k, dtype=bool))
            lefts.append(backward)
    if not features:
        empty = np.zeros(0, dtype=np.int64)
        return Candidates(empty, empty, empty.astype(bool), np.zeros(0, dtype=object))
    return Candidates(np.concatenate(features), np.concatenate(bins), np.concatenate(defaults),
                      np.concatenate(lefts))


def pack_ciphertexts(ciphertexts: np.ndarray, per: int, shift_bits: int, modulus) -> np.ndarray:
    """Groups of `per` ciphertexts as one each: E(m_0 + m_1·2^s + m_2·2^2s + …), s = `shift_bits`.

    Decrypting is the guest's largest cost, one OU decryption per candidate; a candidate's (G, H)
    pair fills only a quarter of a plaintext, so the host shifts and adds (Horner: c ← c^(2^s)·next)
    `per` of them into one. The last group is padded with encryptions of zero.
    """
    if per <= 1 or not len(ciphertexts):
        return ciphertexts
    padded = np.full(-(-len(ciphertexts) // per) * per, ONE, dtype=object)
    padded[:len(ciphertexts)] = ciphertexts
    groups = padded.reshape(-1, per)
    if groups.size * shift_bits < PARALLEL_MIN_WORK * 10 or parallel.workers() < 2:  # a shift: ~shift_bits squarings
        return _horner(groups, shift_bits, modulus)
    return np.concatenate(parallel.run(_horner, [(groups[s], shift_bits, modulus)
                                                 for s in parallel.split(len(groups))]))


def _horner(groups: np.ndarray, shift_bits: int, modulus) -> np.ndarray:
    shift = gmpy2.mpz(1) << shift_bits
    acc = groups[:, -1]
    for i in range(groups.shape[1] - 2, -1, -1):
        acc = _powmod(acc, shift, modulus) * groups[:, i] % modulus
    return np.asarray(acc, dtype=object)
