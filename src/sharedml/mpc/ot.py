"""Oblivious transfer for two parties: curve-based base OTs, IKNP extension, and boolean AND triples.

Why: garbled circuits need the evaluator's input labels transferred without the garbler learning the
evaluator's bits, and boolean secret sharing needs AND triples; both reduce to millions of OTs.
Public-key OTs cost ~0.1 ms each, so only 128 are run per (party pair, direction) and stretched to any
number of OTs with symmetric crypto (IKNP03 with the ALSZ13 seed-expansion trick).

Security model: semi-honest (passive) adversaries, 128-bit computational security. Randomness that must
stay secret comes from the OS CSPRNG (`secrets`) or from ChaCha20 (`SeededStream`) keyed by it.

* Base OT: Chou–Orlandi "simplest OT" (2015) on the prime-order subgroup of Curve25519 in Edwards form.
* Extension: IKNP; the OT sender holds a secret 128-bit Δ, each extended OT j gives the receiver
  t_j and the sender q_j = t_j ⊕ r_j·Δ, hashed into independent messages with the TCCR hash below.
* Correlated OT over Z_2^64 (for arithmetic tuples): the sender keeps s = its random message x0 and
  sends one correction x1 − x0 − y_j per OT, so the receiver gets s + c_j·y_j: nothing about y_j
  when c_j = 0 (x1 stays pseudorandom to it), and y_j masked by the unseen x0 when c_j = 1.
  Gilboa's product x·y of the receiver's x and the sender's y is 64 of these, one per bit of x
  (gilboa_receive / gilboa_send).
* Hash: H(x, i) = π(π(x) ⊕ i) ⊕ π(x), the tweakable circular correlation-robust hash of Guo, Katz,
  Wang and Yu (S&P 2020), with π = AES-128 under a fixed, public key. The simpler π(x ⊕ i) ⊕ x ⊕ i is
  avoided on purpose: x and i enter it only as x ⊕ i, so H(x, i) = H(x ⊕ i ⊕ j, j) for every j, and
  it is not tweakable-correlation-robust.
"""

from __future__ import annotations

import hashlib
import secrets

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from nacl.bindings import (
    crypto_core_ed25519_add,
    crypto_core_ed25519_is_valid_point,
    crypto_core_ed25519_scalar_reduce,
    crypto_core_ed25519_sub,
    crypto_scalarmult_ed25519_base_noclamp,
    crypto_scalarmult_ed25519_noclamp,
)

from ..crypto.prg import SeededStream
from ..runtime.context import Context

__all__ = ["BLOCK", "KAPPA", "OTExtension", "and_triples", "base_ot_receive", "base_ot_send", "gilboa_receive",
           "gilboa_send", "tccr_hash"]

KAPPA = 128  # security parameter: number of base OTs, bits of Δ and of every extended OT row
BLOCK = 16  # bytes of a KAPPA-bit block
_POINT = 32  # bytes of an encoded Ed25519 point
_CHUNK = 1 << 16  # extended OTs per message, bounding memory to a few MiB per chunk

# π's key is public by design: in the random-permutation model (BHKR13, GKWY20) fixed-key AES is a
# public permutation that everyone, the adversary included, may evaluate. Security rests on the secret
# inputs (Δ, labels) being unpredictable, never on the key. A nothing-up-my-sleeve derivation shows it
# was not chosen to have any special structure.
_FIXED_KEY = hashlib.sha256(b"sharedml.mpc fixed-key AES-128").digest()[:BLOCK]


def _permute(blocks: np.ndarray) -> np.ndarray:
    """π: fixed-key AES-128-ECB over all (n, 16) rows in one OpenSSL call, into a writable array."""
    out = np.empty(blocks.size + BLOCK - 1, dtype=np.uint8)  # update_into wants a block of slack
    encryptor = Cipher(algorithms.AES(_FIXED_KEY), modes.ECB()).encryptor()
    encryptor.update_into(np.ascontiguousarray(blocks), out)
    return out[: blocks.size].reshape(blocks.shape)


def tccr_hash(x: np.ndarray, tweaks: np.ndarray) -> np.ndarray:
    """H(x_k, i_k) = π(π(x_k) ⊕ i_k) ⊕ π(x_k) for rows x (n, 16) uint8 and 64-bit tweaks (n,).

    Each tweak goes into the low 8 bytes of the block (little-endian). Outputs for distinct tweaks
    behave as independent random values even when inputs are related by a secret offset, which is
    what IKNP (offset Δ) and free-XOR garbling (offset R) need. Use each tweak at most once per secret.
    """
    px = _permute(x)
    masked = px.copy()
    masked.view("<u8")[:, 0] ^= tweaks.astype(np.uint64, copy=False)
    out = _permute(masked)
    out ^= px
    return out


# ---------------------------------------------------------------------------------------------------
# Base OT: Chou–Orlandi over Ed25519
# ---------------------------------------------------------------------------------------------------


def _random_scalar() -> bytes:
    """Uniform scalar mod the group order ℓ: 512 random bits reduced, so the bias is ~2^-260."""
    return crypto_core_ed25519_scalar_reduce(secrets.token_bytes(64))


def _valid_point(point: object, what: str) -> bytes:
    """Reject anything but a canonical point of the prime-order subgroup (no small-order tricks)."""
    if not isinstance(point, bytes) or len(point) != _POINT or not crypto_core_ed25519_is_valid_point(point):
        raise ValueError(f"base OT: the peer sent an invalid {what}: not a canonical Ed25519 point of prime order")
    return point


def _base_key(a_point: bytes, b_point: bytes, index: int, shared: bytes) -> bytes:
    """Key of one base OT: SHA-256 over the transcript (A, B_j, j) and the Diffie–Hellman point."""
    digest = hashlib.sha256(b"sharedml.mpc.ot.base\0" + a_point + b_point + index.to_bytes(8, "little") + shared)
    return digest.digest()[:BLOCK]


def base_ot_send(ctx: Context, peer: str, count: int, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """Run `count` base OTs as sender; returns random keys (k0, k1), each (count, 16) uint8.

    Chou–Orlandi: send A = aG; the receiver answers B_j = b_j·G + c_j·A; then k0_j = H(aB_j) and
    k1_j = H(a(B_j − A)) = H(aB_j − aA), of which the receiver can compute only k_{c_j} = H(b_j·A).
    It needs point addition, which X25519's x-only (Montgomery ladder) API cannot do, hence the
    Edwards form of the same curve through libsodium's ed25519 group operations.
    """
    a = _random_scalar()
    a_point = crypto_scalarmult_ed25519_base_noclamp(a)
    ctx.send(peer, f"{tag}/A", a_point)
    b_points = ctx.recv(peer, f"{tag}/B")
    if not isinstance(b_points, np.ndarray) or b_points.dtype != np.uint8 or b_points.shape != (count, _POINT):
        raise ValueError(f"base OT: the peer sent malformed points; expected a ({count}, {_POINT}) uint8 array")
    a_a = crypto_scalarmult_ed25519_noclamp(a, a_point)
    keys = np.empty((2, count, BLOCK), dtype=np.uint8)
    for j, row in enumerate(b_points):
        b_point = _valid_point(row.tobytes(), f"point B_{j}")
        if b_point == a_point:
            raise ValueError(f"base OT: the peer sent B_{j} = A, which would reveal both keys")
        a_b = crypto_scalarmult_ed25519_noclamp(a, b_point)
        keys[0, j] = np.frombuffer(_base_key(a_point, b_point, j, a_b), dtype=np.uint8)
        keys[1, j] = np.frombuffer(_base_key(a_point, b_point, j, crypto_core_ed25519_sub(a_b, a_a)), dtype=np.uint8)
    return keys[0], keys[1]


def base_ot_receive(ctx: Context, peer: str, choices: np.ndarray, tag: str) -> np.ndarray:
    """Run len(choices) base OTs as receiver; returns the chosen keys k_{c_j}, (count, 16) uint8."""
    choices = _as_choices(choices)
    a_point = _valid_point(ctx.recv(peer, f"{tag}/A"), "point A")
    scalars = [_random_scalar() for _ in range(len(choices))]
    b_points = []
    for b, choice in zip(scalars, choices, strict=True):
        b_g = crypto_scalarmult_ed25519_base_noclamp(b)
        b_points.append(crypto_core_ed25519_add(b_g, a_point) if choice else b_g)
    ctx.send(peer, f"{tag}/B", np.frombuffer(b"".join(b_points), dtype=np.uint8).reshape(-1, _POINT))
    keys = [
        _base_key(a_point, b_point, j, crypto_scalarmult_ed25519_noclamp(b, a_point))
        for j, (b, b_point) in enumerate(zip(scalars, b_points, strict=True))
    ]
    return np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(-1, BLOCK).copy()


def _as_choices(choices: np.ndarray) -> np.ndarray:
    choices = np.asarray(choices)
    if choices.ndim != 1 or choices.dtype != np.bool_:
        raise TypeError(f"choices must be a 1-D bool array, got {choices.dtype} of shape {choices.shape}")
    return choices


# ---------------------------------------------------------------------------------------------------
# IKNP OT extension
# ---------------------------------------------------------------------------------------------------

# Masks and shifts of the three swap rounds that transpose an 8x8 bit block held in a uint64 whose bit
# 8·r + c is entry (r, c) (Hacker's Delight, "transpose8").
_SWAPS = tuple(
    (np.uint64(shift), np.uint64(mask))
    for shift, mask in ((7, 0x00AA00AA00AA00AA), (14, 0x0000CCCC0000CCCC), (28, 0x00000000F0F0F0F0))
)


def _transpose(columns: np.ndarray) -> np.ndarray:
    """Bit-transpose a (128, n) uint8 matrix (row i = base OT i, bits little-endian) into (8n, 16) rows.

    Bit i of output row j equals bit j of input row i. Works on 8x8 bit blocks: gather one byte from
    each of 8 consecutive rows into a uint64, transpose it with three masked swaps, scatter the bytes.
    """
    n = columns.shape[1]
    blocks = columns.reshape(BLOCK, 8, n).transpose(0, 2, 1).copy().view("<u8")[..., 0]  # a writable copy
    for shift, mask in _SWAPS:  # in place: swap = ((x >> s) ^ x) & mask; x ^= swap ^ (swap << s)
        swap = blocks >> shift
        swap ^= blocks
        swap &= mask
        blocks ^= swap
        swap <<= shift
        blocks ^= swap
    return blocks.view(np.uint8).reshape(BLOCK, n, 8).transpose(1, 2, 0).reshape(8 * n, BLOCK)


def _streams(keys: np.ndarray) -> list[SeededStream]:
    """One ChaCha20 stream per base-OT key (the PRG G of IKNP), read further by every extension."""
    return [
        SeededStream(hashlib.sha256(b"sharedml.mpc.ot.iknp\0" + key.tobytes()).digest(), domain=b"iknp-columns")
        for key in keys
    ]


def _expand(streams: list[SeededStream], nbytes: int) -> np.ndarray:
    """The next `nbytes` of every stream, as the (128, nbytes) column matrix."""
    return np.frombuffer(b"".join(stream.bytes(nbytes) for stream in streams), dtype=np.uint8).reshape(KAPPA, -1)


def _chunks(m: int) -> list[tuple[int, int]]:
    """(start, stop) of each chunk of m OTs; both sides derive the same split from m."""
    return [(start, min(start + _CHUNK, m)) for start in range(0, m, _CHUNK)]


def _pads(rows: np.ndarray, first_tweak: int, nbytes: int) -> np.ndarray:
    """Hash (copies, n, 16) rows into (copies, n, nbytes) messages; row j of every copy uses the same tweaks.

    A message takes ceil(nbytes/16) hash blocks, each with its own tweak, so any length is supported.
    """
    copies, n, _ = rows.shape
    per_row = -(-nbytes // BLOCK)
    tweaks = np.tile(np.arange(first_tweak, first_tweak + n * per_row, dtype=np.uint64), copies)
    blocks = rows if per_row == 1 else np.repeat(rows, per_row, axis=1)
    return tccr_hash(blocks.reshape(-1, BLOCK), tweaks).reshape(copies, n, -1)[..., :nbytes]


class _Direction:
    """State of one side of one OT direction. Both sides number hash tweaks alike, never reusing one."""

    tweak = 0

    def reserve(self, rows: int, nbytes: int) -> int:
        """First of the tweaks for `rows` messages of `nbytes`, all consecutive, now marked used."""
        first = self.tweak
        self.tweak += rows * -(-nbytes // BLOCK)
        return first


class _SenderState(_Direction):
    """OT-sender side of one direction: Δ, and the streams of the base-OT keys it chose with Δ's bits."""

    def __init__(self, ctx: Context, peer: str, tag: str) -> None:
        self.delta = np.frombuffer(secrets.token_bytes(BLOCK), dtype=np.uint8)
        bits = np.unpackbits(self.delta, bitorder="little").astype(bool)
        self.row_mask = np.where(bits, np.uint8(0xFF), np.uint8(0))[:, None]
        self.streams = _streams(base_ot_receive(ctx, peer, bits, f"{tag}/base"))


class _ReceiverState(_Direction):
    """OT-receiver side of one direction: the streams of both keys of every base OT."""

    def __init__(self, ctx: Context, peer: str, tag: str) -> None:
        k0, k1 = base_ot_send(ctx, peer, KAPPA, f"{tag}/base")
        self.streams0, self.streams1 = _streams(k0), _streams(k1)


class OTExtension:
    """IKNP OT extension with `peer`, in both directions, over one context.

    The 128 base OTs of a direction run on its first use and are kept, so later extensions cost only
    symmetric crypto: 16 bytes sent per OT by the receiver (plus the masked messages for chosen-message
    OT). The two parties must make matching calls in the same order: `random_send`/`send` on one side
    against `random_receive`/`receive` on the other. Not thread-safe.

    What leaks: the sender learns nothing about the choices (each u column is masked by a PRG stream
    the sender cannot compute); the receiver learns only the chosen messages (the other ones are
    hashes of t_j ⊕ Δ with Δ unknown to it).
    """

    def __init__(self, ctx: Context, peer: str, tag: str = "ot") -> None:
        if peer not in ctx.peers:
            raise ValueError(f"{peer!r} is not a peer of {ctx.party!r}")
        self.ctx, self.peer, self.tag = ctx, peer, tag
        self._sender: _SenderState | None = None
        self._receiver: _ReceiverState | None = None

    def _direction(self, sender: str, receiver: str) -> str:
        return f"{self.tag}/{sender}>{receiver}"

    def _sender_state(self) -> _SenderState:
        if self._sender is None:
            self._sender = _SenderState(self.ctx, self.peer, self._direction(self.ctx.party, self.peer))
        return self._sender

    def _receiver_state(self) -> _ReceiverState:
        if self._receiver is None:
            self._receiver = _ReceiverState(self.ctx, self.peer, self._direction(self.peer, self.ctx.party))
        return self._receiver

    def random_send(self, m: int, nbytes: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
        """m random OTs as sender: uniformly random messages (x0, x1), each (m, nbytes) uint8."""
        state = self._sender_state()
        tag = self._direction(self.ctx.party, self.peer) + "/u"
        x0, x1 = np.empty((2, m, nbytes), dtype=np.uint8)
        for start, stop in _chunks(m):
            width = -(-(stop - start) // 8)  # bytes per column; the chunk is padded to whole bytes
            u = self.ctx.recv(self.peer, tag)
            if not isinstance(u, np.ndarray) or u.dtype != np.uint8 or u.shape != (KAPPA, width):
                raise ValueError(f"OT extension: the peer sent a malformed matrix; expected ({KAPPA}, {width}) uint8")
            q = _transpose(_expand(state.streams, width) ^ (u & state.row_mask))
            pads = _pads(np.stack([q, q ^ state.delta]), state.reserve(len(q), nbytes), nbytes)
            x0[start:stop], x1[start:stop] = pads[:, : stop - start]
        return x0, x1

    def random_receive(self, choices: np.ndarray, nbytes: int = BLOCK) -> np.ndarray:
        """Random OTs as receiver: x_{c_j} for each choice bit, (m, nbytes) uint8."""
        choices = _as_choices(choices)
        state = self._receiver_state()
        tag = self._direction(self.peer, self.ctx.party) + "/u"
        out = np.empty((len(choices), nbytes), dtype=np.uint8)
        for start, stop in _chunks(len(choices)):
            packed = np.packbits(choices[start:stop], bitorder="little")
            t = _expand(state.streams0, len(packed))
            self.ctx.send(self.peer, tag, t ^ _expand(state.streams1, len(packed)) ^ packed)
            rows = _transpose(t)
            out[start:stop] = _pads(rows[None], state.reserve(len(rows), nbytes), nbytes)[0, : stop - start]
        return out

    def send(self, m0: np.ndarray, m1: np.ndarray) -> None:
        """Chosen-message OT as sender of (m, L) uint8 message pairs; the receiver gets one of each pair.

        The receiver's real choices drive the random OTs, so one masked pair per OT completes it.
        """
        m0, m1 = np.asarray(m0), np.asarray(m1)
        if m0.dtype != np.uint8 or m0.ndim != 2 or m1.shape != m0.shape or m1.dtype != np.uint8:
            raise TypeError("messages must be two uint8 arrays of the same (m, L) shape")
        x0, x1 = self.random_send(len(m0), m0.shape[1])
        self.ctx.send(self.peer, self._direction(self.ctx.party, self.peer) + "/masked", np.stack([m0 ^ x0, m1 ^ x1]))

    def receive(self, choices: np.ndarray, nbytes: int = BLOCK) -> np.ndarray:
        """Chosen-message OT as receiver: message c_j of each pair, (m, nbytes) uint8."""
        choices = _as_choices(choices)
        pad = self.random_receive(choices, nbytes)
        masked = self.ctx.recv(self.peer, self._direction(self.peer, self.ctx.party) + "/masked")
        if not isinstance(masked, np.ndarray) or masked.dtype != np.uint8 or masked.shape != (2, *pad.shape):
            raise ValueError(f"OT: the peer sent malformed messages; expected (2, {len(pad)}, {nbytes}) uint8")
        return np.where(choices[:, None], masked[1], masked[0]) ^ pad


    def correlated_send(self, correlation: np.ndarray, nbytes: int = 8) -> np.ndarray:
        """Correlated OT as sender over Z_2^(8·nbytes): for (m, L) uint64 `correlation` returns this side's
        random s (m, L); the receiver gets s_j + c_j·correlation_j. Only one masked correction crosses per
        OT (nbytes per element, not two messages), and callers that scale the result by 2^(8·(8 − nbytes))
        or more need only that many low bytes: the high bits of s and of what the receiver gets are junk."""
        m, length = correlation.shape
        x0, x1 = self.random_send(m, length * nbytes)
        s = _ring(x0.reshape(m, length, nbytes))
        tau = _ring(x1.reshape(m, length, nbytes)) - s - correlation
        self.ctx.send(self.peer, self._direction(self.ctx.party, self.peer) + "/correlated", _low_bytes(tau, nbytes))
        return s

    def correlated_receive(self, choices: np.ndarray, length: int, nbytes: int = 8) -> np.ndarray:
        """Correlated OT as receiver: s_j + c_j·correlation_j (mod 2^(8·nbytes)), (m, length) uint64."""
        choices = _as_choices(choices)
        pad = _ring(self.random_receive(choices, length * nbytes).reshape(len(choices), length, nbytes))
        tau = self.ctx.recv(self.peer, self._direction(self.peer, self.ctx.party) + "/correlated")
        if not isinstance(tau, np.ndarray) or tau.dtype != np.uint8 or tau.shape != (len(choices), length, nbytes):
            raise ValueError(f"OT: the peer sent a malformed correction; expected ({len(choices)}, {length}, {nbytes}) "
                             "uint8")
        return np.where(choices[:, None], pad - _ring(tau), pad)


def _ring(data: np.ndarray) -> np.ndarray:
    """(..., nbytes) little-endian uint8 groups as uint64 whose low nbytes are the group; the bytes
    above are whatever follows in memory (callers of correlated OT ignore them), read in one pass."""
    *shape, nbytes = data.shape
    flat = np.concatenate([np.ascontiguousarray(data).ravel(), np.zeros(8, np.uint8)])
    words = np.ndarray(shape=(flat.size - 8) // nbytes, dtype="<u8", buffer=flat, strides=(nbytes,))
    return words.astype(np.uint64).reshape(shape)


def _low_bytes(values: np.ndarray, nbytes: int) -> np.ndarray:
    """The low nbytes of each uint64, as (..., nbytes) uint8."""
    return np.ascontiguousarray(values.astype("<u8", copy=False)[..., None].view(np.uint8)[..., :nbytes])


def gilboa_receive(ot: OTExtension, x: np.ndarray, length: int) -> np.ndarray:
    """Receiver half of Gilboa's product: this side's additive share of x_i·y_i (mod 2^64) for its own
    x (p,) uint64 and the peer's y (p, length). One correlated OT per bit of x: choosing with bit k it
    gets s + bit·y, weighted by 2^k, so bit k needs only its 64 − k low bits (rounded to bytes per group)."""
    bits = np.unpackbits(x.astype("<u8").view(np.uint8).reshape(-1, 8), axis=1, bitorder="little").astype(bool)
    share = np.zeros((len(x), length), np.uint64)
    for group in range(_GROUPS):  # bits of group g travel in 8 − g·(8 / _GROUPS) bytes
        chosen = bits[:, _GROUP_BITS * group:_GROUP_BITS * (group + 1)]
        got = ot.correlated_receive(chosen.ravel(), length, _group_bytes(group)).reshape(len(x), _GROUP_BITS, length)
        share += (got << _bit_weights(group)).sum(axis=1, dtype=np.uint64)
    return share


def gilboa_send(ot: OTExtension, y: np.ndarray) -> np.ndarray:
    """Sender half of Gilboa's product for its own y (p, length) uint64: its share of x_i·y_i."""
    p, length = y.shape
    share = np.zeros((p, length), np.uint64)
    correlation = np.repeat(y, _GROUP_BITS, axis=0)  # the same y for each bit of a group
    for group in range(_GROUPS):
        s = ot.correlated_send(correlation, _group_bytes(group)).reshape(p, _GROUP_BITS, length)
        share -= (s << _bit_weights(group)).sum(axis=1, dtype=np.uint64)
    return share


# Gilboa's bits go in groups, one OT extension call each: fewer groups mean fewer calls (each has a fixed
# cost) but coarser byte lengths; 4 groups of 16 bits send 5 bytes per element on average (8 groups: 4.5).
_GROUPS = 4
_GROUP_BITS = 64 // _GROUPS


def _group_bytes(group: int) -> int:
    """Bytes that carry group g's OTs: its lowest bit k = 16g needs only 64 − k bits."""
    return 8 - group * (8 // _GROUPS)


def _bit_weights(group: int) -> np.ndarray:
    """The shifts of group g's bits, shaped to scale a (p, bits, length) block of OT results bit by bit."""
    return np.arange(_GROUP_BITS * group, _GROUP_BITS * (group + 1), dtype=np.uint64)[None, :, None]


# ---------------------------------------------------------------------------------------------------
# Boolean AND triples
# ---------------------------------------------------------------------------------------------------


def _words_to_bits(words: np.ndarray) -> np.ndarray:
    return np.unpackbits(words.view(np.uint8), bitorder="little").astype(bool)


def _bits_to_words(bits: np.ndarray) -> np.ndarray:
    return np.packbits(bits, bitorder="little").view(np.uint64)


def _cross_term_send(ot: OTExtension, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Sender half of one cross term: its b bits are r0 ⊕ r1, its share of a_peer·b is r0."""
    x0, x1 = ot.random_send(n, nbytes=1)
    r0, r1 = (x0[:, 0] & 1).astype(bool), (x1[:, 0] & 1).astype(bool)
    return _bits_to_words(r0 ^ r1), _bits_to_words(r0)


def _cross_term_receive(ot: OTExtension, a_bits: np.ndarray) -> np.ndarray:
    """Receiver half: choosing with its a bits it gets r_a = r0 ⊕ a·b_peer, its share of a·b_peer."""
    return _bits_to_words((ot.random_receive(a_bits, nbytes=1)[:, 0] & 1).astype(bool))


def and_triples(ctx: Context, peer: str, words: int, *,
                ot: OTExtension | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """64·words boolean Beaver triples with `peer`, XOR-shared and packed 64 per uint64 word.

    Returns this party's (a, b, c), with (a0 ^ a1) & (b0 ^ b1) == c0 ^ c1 bitwise. Each party's a is
    fresh randomness; a0·b1 and a1·b0 come from one random OT each (the a-holder chooses with a, the
    other side's b is the XOR of its two random bits), so a triple costs 2 random OTs. Both parties
    call this; the first by name sends first, which orders the messages without deadlock. Pass an
    `OTExtension` to reuse its base OTs across calls.
    """
    ot = ot if ot is not None else OTExtension(ctx, peer, tag="and-triples")
    a = np.frombuffer(bytearray(secrets.token_bytes(8 * words)), dtype=np.uint64)
    if ctx.party < peer:
        b, sent_share = _cross_term_send(ot, 64 * words)
        received_share = _cross_term_receive(ot, _words_to_bits(a))
    else:
        received_share = _cross_term_receive(ot, _words_to_bits(a))
        b, sent_share = _cross_term_send(ot, 64 * words)
    return a, b, (a & b) ^ sent_share ^ received_share
