"""Boolean sharing inside the arithmetic engine: AND gates, the sign bit, and back to arithmetic.

A comparison needs the top bit of a value that is shared additively over Z_2^64. Each party's
share is an input to a binary adder: party i XOR-shares its own share (it holds the word, everyone
else holds 0), three operands at a time are reduced to two by carry-save adders, and a reduction
tree computes the carry into bit 63 (see sign_bit). Words are numpy uint64, so one AND gate on a
word is 64 bit-gates; the sign costs 7 rounds of AND gates (plus one per carry-save level for more
than two parties) and about 3 words of AND triples per element.

The resulting bit is XOR-shared; `to_arithmetic` converts it with a daBit (a random bit shared both
ways): open c = bit ⊕ r, then bit = c + r − 2·c·r, linear in r's additive shares. One more round.

Every opened word is a value XORed with a fresh uniform word from a triple or a daBit, so the
opened words are uniform and independent of the inputs.
"""

from __future__ import annotations

import numpy as np

from .core import SessionCore
from .fixed import wrapping

_ONE = np.uint64(1)
_TOP = np.uint64(63)


def and_gate(session: SessionCore, *pairs: tuple[np.ndarray, np.ndarray]) -> list[np.ndarray]:
    """XOR shares of x & y for each (x, y) pair of XOR-shared word arrays, all in one round."""
    xs = [np.ascontiguousarray(x, dtype=np.uint64).ravel() for x, _ in pairs]
    ys = [np.ascontiguousarray(y, dtype=np.uint64).ravel() for _, y in pairs]
    x, y = np.concatenate(xs), np.concatenate(ys)
    triple = session.triples.and_words(x.size)
    d, e = session.open(x ^ triple.first, y ^ triple.second, xor=True)
    z = triple.last ^ (d & triple.second) ^ (e & triple.first)
    if session.is_first:
        z ^= d & e
    out, start = [], 0
    for (px, _), flat in zip(pairs, xs, strict=True):
        out.append(z[start:start + flat.size].reshape(np.shape(px)))
        start += flat.size
    return out


def _operands(session: SessionCore, share: np.ndarray) -> list[np.ndarray]:
    """Each party's additive share as its own XOR-shared operand of the adder."""
    zero = np.zeros_like(share)
    return [share if i == session.index else zero for i in range(len(session.parties))]


def _carry_save(session: SessionCore, operands: list[np.ndarray]) -> list[np.ndarray]:
    """Reduce to two operands with the same sum mod 2^64, one AND round per level."""
    while len(operands) > 2:
        groups = len(operands) // 3
        triples = [operands[3 * g:3 * g + 3] for g in range(groups)]
        rest = operands[3 * groups:]
        majority = and_gate(session, *[(a ^ c, b ^ c) for a, b, c in triples])
        operands = rest
        for (a, b, c), m in zip(triples, majority, strict=True):
            operands += [a ^ b ^ c, (m ^ c) << _ONE]
    return operands


def sign_bit(session: SessionCore, share: np.ndarray) -> np.ndarray:
    """XOR shares (in bit 0) of the top bit of the shared value: 1 where it is negative."""
    shape = np.shape(share)
    a, b = _carry_save(session, _operands(session, np.asarray(share, dtype=np.uint64).ravel()))
    return (((a ^ b) >> _TOP) ^ _carry_into_top(session, a, b)).reshape(shape)


def _carry_into_top(session: SessionCore, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """XOR shares (in bit 0) of the carry into bit 63 of a + b, for XOR-shared words a, b.

    A reduction tree over (generate, propagate) pairs of neighbouring bit groups: each level halves
    the bits per element, and the words are merged pairwise so that they stay full. 7 rounds and
    about 3 words of AND triples per element (a full prefix adder would need 12).
    """
    # Bit 63 set to "propagate, don't generate", so the group carry out of bit 63 is the carry into it.
    a = (a & _LOW_63) | (_HIGH if session.is_first else np.uint64(0))
    b = b & _LOW_63
    propagate = a ^ b
    (generate,) = and_gate(session, (a, b))
    for level in range(6):  # fields of 64 >> level bits, 2^level elements per word
        g_low, g_high = _merged(_even_bits(generate)), _merged(_even_bits(generate >> _ONE))
        p_low, p_high = _merged(_even_bits(propagate)), _merged(_even_bits(propagate >> _ONE))
        if level < 5:
            carried, propagate = and_gate(session, (p_high, g_low), (p_high, p_low))
        else:
            (carried,) = and_gate(session, (p_high, g_low))
        generate = g_high ^ carried
    bits = (generate[:, None] >> np.arange(64, dtype=np.uint64)) & _ONE  # one bit per element, in order
    return bits.ravel()[:a.size]


_LOW_63 = np.uint64((1 << 63) - 1)
_HIGH = np.uint64(1 << 63)
_EVEN_MASKS = [np.uint64(m) for m in (0x3333333333333333, 0x0F0F0F0F0F0F0F0F, 0x00FF00FF00FF00FF,
                                       0x0000FFFF0000FFFF, 0x00000000FFFFFFFF)]


def _even_bits(x: np.ndarray) -> np.ndarray:
    """Bits 0, 2, 4, … of each word moved to bits 0, 1, 2, … (a bit permutation, so it commutes with XOR
    sharing). Fields of w bits side by side become fields of w/2 bits side by side, in the low half."""
    x = x & np.uint64(0x5555555555555555)
    for step, mask in enumerate(_EVEN_MASKS):
        x = (x | (x >> np.uint64(1 << step))) & mask
    return x


def _merged(halves: np.ndarray) -> np.ndarray:
    """Words using only their low 32 bits, two per word (the next word's bits above), in order."""
    if len(halves) % 2:
        halves = np.append(halves, np.uint64(0))
    return halves[0::2] | (halves[1::2] << np.uint64(32))


@wrapping
def to_arithmetic(session: SessionCore, bits: np.ndarray) -> np.ndarray:
    """Additive shares over Z_2^64 of XOR-shared bits (bit 0 of each word)."""
    flat = np.asarray(bits, dtype=np.uint64).ravel()
    dabits = session.triples.dabits(flat.size)
    (c,) = session.open(flat ^ dabits.first, xor=True)
    c &= _ONE
    out = dabits.last - np.uint64(2) * c * dabits.last
    if session.is_first:
        out += c
    return out.reshape(np.shape(bits))
