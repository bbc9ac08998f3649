"""One mini-batch of a vertical GLM: every party's gradient, exchanged under additively homomorphic encryption.

Why this shape: the residual d = ∂loss/∂z of a row needs the label (guest) and every party's partial
score u_p = X_p w_p; the gradient X_pᵀd/B of a party needs its own features. So each party receives d
only encrypted, multiplies it by its own features under encryption, masks the product with a random
integer and has the key owner decrypt the *masked* value; only the party that drew the mask can
remove it. Every objective's residual has the form d = c + s·Σ_h v_h (`Objective`), with c and s
known to the guest and v_h to host h. With no arbiter the guest and every host hold their own keys:

  * the guest sends [[c]] (and [[s]] when s is a per-row secret) under its key to every host;
  * each host sends [[v_h]] under its own key to the guest, and [[s·v_h]] under the guest's key to
    the other hosts directly (never through the guest, who could decrypt it);
  * a host forms [[d]] under the guest's key and its masked [[X_hᵀd]]; the guest decrypts it;
  * the guest forms Xgᵀ(s·[[v_h]]) under each host's key (s folded into its plaintext features),
    masked; the host decrypts it; the guest adds its plaintext Xgᵀc.

The guest's part from several hosts is summed without the guest seeing any host's share: host i
adds R_i − R_(i−1) to its decrypted share, with R_i sent by host i to host i+1 (cyclically), so the
masks cancel in the guest's sum. With an arbiter (FATE's coordinated LR), the arbiter owns the only
key pair, guest and hosts exchange [[·]] under it and the arbiter decrypts every masked gradient; the
arbiter must not collude with anyone. `docs/security.md` lists what each party learns.

hetero_lr's `taylor_point: exact` replaces (c, s, v) by ring shares of d = σ(z) − y that the guest and the
first host compute with the MPC engine (`hetero_exact`); the masked decryptions above stay as they are.

Numbers: c, s and v are encrypted with `FRAC_BITS` fractional bits under a *declared* public bound
(`VALUE_LIMIT`), so ciphertext bounds reveal nothing data-dependent; features enter products with
`FEATURE_FRAC_BITS`, elementwise plaintext factors with `SCALE_FRAC_BITS`. `EncryptedArray` refuses
any operation that could wrap. Masks are uniform integers `STAT_BITS` bits wider than the masked
value's public bound (statistical distance ≤ 2^-39) and every masked ciphertext is re-randomised
before it leaves its maker. `hetero_messages.py` lists every message.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...crypto.fixed_point import FixedPoint
from ...crypto.he import EncryptedArray, encrypt
from ...crypto.he_scheme import HEPrivateKey, HEPublicKey
from ...crypto.he_schemes import generate_keypair, public_key_from_dict
from ...runtime.context import Context
from .hetero_kernel import multi_exp
from .hetero_messages import (
    GRADIENT,
    GRADIENT_PLAIN,
    GUEST_PART,
    GUEST_PART_PLAIN,
    HOST_TERM,
    KEY,
    PAIR_MASK,
    RESIDUAL,
    SCALED_TERM,
)

FRAC_BITS = 32  # fractional bits of encrypted residuals and scores
FEATURE_FRAC_BITS = 12  # fractional bits of features in Xᵀ[[d]]: rounding ≤ 2^-13 (standardised: of a std)
VALUE_LIMIT = float(1 << 20)  # declared public bound on every encrypted value
SCALE_FRAC_BITS = 16  # fractional bits of a plaintext factor multiplied into ciphertexts elementwise
STAT_BITS = 40  # mask width beyond the masked value's bound


@dataclass(frozen=True)
class Objective:
    """A row's residual d = ∂loss/∂z written as d = c + s·Σ_h v_h: c and s from the guest's partial score
    u_g (and label, exposure), v_h from host h's partial score u_h.

    * logistic, Taylor point "zero" (FATE): σ(z) ≈ 0.5 + z/4, so c = u_g/4 + 1/2 − y, s = 1/4, v_h = u_h.
    * logistic, Taylor point "guest": σ(z) ≈ σ(u_g) + σ'(u_g)·u_h, exact where the hosts' share of z is
      small: c = σ(u_g) − y, s = σ'(u_g) (per row, secret: sent encrypted), v_h = u_h.
    * logistic, Taylor point "exact": no linearisation; d = σ(z) − y is computed on secret shares by the
      guest and the first host (`hetero_exact`), so this form (c, s, v) is not used.
    * linear: c = u_g − y, s = 1, v_h = u_h (exact).
    * poisson: d = exposure·exp(u_g)·exp(u_h) − y, so c = −y, s = exposure·exp(u_g) (secret), v_h = exp(u_h)
      (exact, one host only: several would multiply their secrets).
    """

    name: str
    taylor_point: str = "zero"
    exact_epochs: int = 0  # logistic: the last this many passes use the exact residual (`hetero_exact`)

    @property
    def secret_scale(self) -> bool:
        return self.name == "poisson" or (self.name == "logistic" and self.taylor_point == "guest")

    @property
    def shared_residual(self) -> bool:
        """Some pass takes its residual from the two-party sigmoid on shares (`hetero_exact`), not (c, s, v)."""
        return self.name == "logistic" and (self.taylor_point == "exact" or self.exact_epochs > 0)

    def exact_in(self, epoch: int, epochs: int) -> bool:
        """Whether pass `epoch` of `epochs` uses the exact residual: every pass with `taylor_point: exact`,
        else the last `exact_epochs` (every party computes the same from the agreed settings)."""
        return self.shared_residual and (self.taylor_point == "exact" or epoch >= epochs - self.exact_epochs)

    @property
    def scale(self) -> float:
        """The public s (objectives without a secret scale)."""
        return 0.25 if self.name == "logistic" else 1.0

    def guest_terms(self, U: np.ndarray, Y: np.ndarray, exposure: np.ndarray) -> tuple[np.ndarray, Any]:
        if self.name == "linear":
            return U - Y, self.scale
        if self.name == "poisson":
            return -Y, exposure[:, None] * np.exp(U)
        if self.taylor_point == "zero":
            return 0.25 * U + 0.5 - Y, self.scale
        p = 0.5 * (1.0 + np.tanh(0.5 * U))
        return p - Y, p * (1.0 - p)

    def host_term(self, U: np.ndarray) -> np.ndarray:
        return np.exp(U) if self.name == "poisson" else U


def check_hosts(objective: Objective, hosts: list[str]) -> None:
    """Refuse Poisson with several hosts: exp(u_h1)·exp(u_h2) would multiply two parties' secrets."""
    if objective.name == "poisson" and len(hosts) != 1:
        raise ValueError(f"hetero_poisson supports exactly one host, got {len(hosts)} ({', '.join(hosts)}): "
                         "exp(z) multiplies the hosts' secret scores, which additive HE cannot do; join the "
                         "hosts' features at one host or use hetero_linr on log counts")


def _bounded(values: np.ndarray, what: str, party: str) -> np.ndarray:
    if not np.all(np.isfinite(values)) or np.max(np.abs(values), initial=0.0) > VALUE_LIMIT:
        raise OverflowError(f"party {party!r}: {what} left the encrypted range ±{VALUE_LIMIT:.0f} (training "
                            "diverged); lower `learning_rate` or standardise the features (`standardize: true`)")
    return values


def encrypt_bounded(key: HEPublicKey | HEPrivateKey, values: np.ndarray, what: str, party: str,
                    frac_bits: int = FRAC_BITS) -> EncryptedArray:
    """Encrypt under the public bound VALUE_LIMIT, so the array's bound says nothing about the data."""
    return encrypt(key, _bounded(values, what, party), frac_bits, max_abs=VALUE_LIMIT)


def xt_dot(X: np.ndarray, enc: EncryptedArray) -> EncryptedArray:
    """[[Xᵀ D]] for plaintext X (B, d) and encrypted D (B, K): shape (d, K).

    Computed as (X − s)ᵀ[[D]] + s ⊗ [[Σ D]] with s the column minima, so that the bucket
    multi-exponentiation (`hetero_kernel`) sees small non-negative exponents only; constant columns
    (the intercept's) cost nothing but the correction.
    """
    key, shift = enc.public_key, X.min(axis=0)
    shifted = FixedPoint(FEATURE_FRAC_BITS).encode(X - shift)
    out = enc.sum(axis=0)[None, :].mul(np.broadcast_to(shift[:, None], (X.shape[1], enc.shape[1])),
                                        FEATURE_FRAC_BITS)
    norm = max(np.asarray(shifted.sum(axis=0), dtype=object).tolist(), default=0)
    bound = out.bound + enc.bound * int(norm)
    if bound > key.max_plaintext or _max_int(shifted) >= 1 << 62:
        raise OverflowError(f"Xᵀ[[d]] needs {bound.bit_length()}-bit plaintexts; the {key.scheme} key allows "
                            f"{key.max_plaintext.bit_length()}: use a larger key_bits or standardise the features")
    products = np.stack([multi_exp(enc.ciphertexts[:, k], shifted, key.ciphertext_modulus)
                         for k in range(enc.shape[1])], axis=1)
    return EncryptedArray(key, key.add(out.ciphertexts, products), out.frac_bits, bound)


def _max_int(ints: np.ndarray) -> int:
    return max((int(v) for v in ints.flat), default=0)


def scaled_xt_dot(X: np.ndarray, s: Any, enc: EncryptedArray) -> EncryptedArray:
    """[[Xᵀ(s·V)]] for plaintext s (a number, or (B, K) like V): s is folded into X, class by class."""
    if np.ndim(s) == 0:
        return xt_dot(s * X, enc)
    columns = [xt_dot(s[:, k:k + 1] * X, enc[:, k:k + 1]) for k in range(enc.shape[1])]
    return EncryptedArray(enc.public_key, np.concatenate([col.ciphertexts for col in columns], axis=1),
                          columns[0].frac_bits, max(col.bound for col in columns))


def random_ints(width: int, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform integers in [0, 2^width) from the OS CSPRNG."""
    size = int(np.prod(shape))
    nbytes = -(-width // 8)
    raw = secrets.token_bytes(size * nbytes)
    flat = np.empty(size, dtype=object)
    flat[:] = [int.from_bytes(raw[i * nbytes:(i + 1) * nbytes], "little") >> (8 * nbytes - width)
               for i in range(size)]
    return flat.reshape(shape)


def mask(enc: EncryptedArray) -> tuple[EncryptedArray, np.ndarray]:
    """enc + r (re-randomised) and r, r uniform with STAT_BITS of slack over enc's bound."""
    key = enc.public_key
    width = enc.bound.bit_length() + STAT_BITS
    bound = enc.bound + (1 << width)
    if bound > key.max_plaintext:
        raise OverflowError(f"a masked gradient needs {bound.bit_length()}-bit plaintexts; the {key.scheme} key "
                            f"allows {key.max_plaintext.bit_length()}: use a larger key_bits")
    r = random_ints(width, enc.shape)
    masked = key.rerandomize(key.add_plain(enc.ciphertexts, r))
    return EncryptedArray(key, masked, enc.frac_bits, bound), r


def unmask(plain: Any, r: np.ndarray, frac_bits: int, peer: str) -> np.ndarray:
    """Float values from the key owner's decryption of enc + r."""
    ints = np.asarray(plain, dtype=object)
    if ints.shape != r.shape or not all(isinstance(v, int) for v in ints.flat):
        raise ValueError(f"party {peer!r} returned a malformed decryption (shape {ints.shape}, expected {r.shape})")
    return FixedPoint(frac_bits).decode(ints - r)


def decrypt_for(ctx: Context, peer: str, private_key: HEPrivateKey) -> None:
    """Key owner: decrypt the masked gradient `peer` sent and send the integers back."""
    enc = EncryptedArray.from_wire(GRADIENT.recv(ctx, peer), private_key.public_key)
    GRADIENT_PLAIN.send(ctx, peer, private_key.decrypt(enc.ciphertexts))


def decrypt_masked_ints(ctx: Context, owner: str, enc: EncryptedArray) -> np.ndarray:
    """Have `owner` decrypt the integers of enc behind a fresh mask; return them exactly (Python ints)."""
    masked, r = mask(enc)
    GRADIENT.send(ctx, owner, masked.to_wire())
    return _ints(GRADIENT_PLAIN.recv(ctx, owner), r.shape, owner) - r


def decrypt_masked(ctx: Context, owner: str, enc: EncryptedArray) -> np.ndarray:
    """Have `owner` (the key holder) decrypt the gradient enc behind a fresh mask; return the float values."""
    masked, r = mask(enc)
    GRADIENT.send(ctx, owner, masked.to_wire())
    return unmask(GRADIENT_PLAIN.recv(ctx, owner), r, enc.frac_bits, owner)


@dataclass
class Keys:
    """The key pairs a party holds and the public keys it needs.

    No arbiter: `own` is this party's pair; the guest keeps every host's public key in `peers`, a host
    the guest's. With an arbiter, only the arbiter has `own`; the others hold its public key in `shared`.
    """

    own: tuple[HEPublicKey, HEPrivateKey] | None = None
    peers: dict[str, HEPublicKey] | None = None
    shared: HEPublicKey | None = None
    _fills: dict[str, threading.Thread] = field(default_factory=dict)

    def precompute(self, counts: dict[str, int], wait: bool = False) -> None:
        """Make sure the pools of the keys this party encrypts under ({key owner: values}) will hold at least
        `counts` values: filled in the background (worker processes) unless `wait`; a fill still running
        is left to finish."""
        for owner, count in counts.items():
            if self.shared is not None:
                source: Any = self.shared
            elif self.peers is not None and owner in self.peers:
                source = self.peers[owner]
            else:
                source = self.own[1] if hasattr(self.own[1], "precompute") else self.own[0]
            pool = getattr(source, "public_key", source).pool
            running = self._fills.get(owner)
            if count > len(pool) and (running is None or not running.is_alive()):
                self._fills[owner] = source.precompute(count - len(pool), background=True)
            if wait and self._fills.get(owner) is not None:
                self._fills[owner].join()


def exchange_keys(ctx: Context, scheme: str, key_bits: int, arbiter: str | None) -> Keys:
    """Generate this party's keys and swap the public ones the protocol needs."""
    guest, hosts = ctx.parties_with_role("guest")[0], ctx.parties_with_role("host")
    if arbiter is not None:
        if ctx.party == arbiter:
            pair = generate_keypair(scheme, key_bits)
            KEY.broadcast(ctx, pair[0].to_dict(), [guest, *hosts])
            return Keys(own=pair)
        return Keys(shared=public_key_from_dict(scheme, KEY.recv(ctx, arbiter)))
    pair = generate_keypair(scheme, key_bits)
    if ctx.party == guest:
        KEY.broadcast(ctx, pair[0].to_dict(), hosts)
        keys = KEY.gather(ctx, hosts)
        return Keys(own=pair, peers={h: public_key_from_dict(scheme, keys[h]) for h in hosts})
    KEY.send(ctx, guest, pair[0].to_dict())
    return Keys(own=pair, peers={guest: public_key_from_dict(scheme, KEY.recv(ctx, guest))})


class BatchProtocol:
    """The per-batch exchange for one party. `guest_gradient` / `host_gradient` return the party's Xᵀd
    summed over the batch (the caller divides by B); the arbiter only decrypts (`serve`)."""

    def __init__(self, ctx: Context, objective: Objective, keys: Keys, arbiter: str | None, batch_rows: int) -> None:
        check_hosts(objective, ctx.parties_with_role("host"))
        self.batch_rows = batch_rows
        self.ctx = ctx
        self.objective = objective
        self.keys = keys
        self.arbiter = arbiter
        self.guest = ctx.parties_with_role("guest")[0]
        self.hosts = ctx.parties_with_role("host")
        self.others = [h for h in self.hosts if h != ctx.party]  # a host's fellow hosts
        self.c_frac = FRAC_BITS + (SCALE_FRAC_BITS if objective.secret_scale else 0)  # [[c]] matches [[s·v]]
        self.exact = None
        self.exact_now = False  # this pass's residual: exact (set by prepare_epoch) or the Taylor point's
        if objective.shared_residual:
            from .hetero_exact import ExactResidual  # noqa: PLC0415 - the MPC engine only where it is used

            self.exact = ExactResidual(self)

    def prepare_epoch(self, batch_sizes: list[int], classes: int, exact: bool) -> None:
        """Before an epoch's batches: which residual it uses, and for the exact one its offline phase (the
        sigmoids' tuples)."""
        self.exact_now = exact and self.exact is not None
        if self.exact_now:
            self.exact.prepare(batch_sizes, classes)

    def close(self) -> None:
        if self.exact is not None:
            self.exact.close()

    def encryptions_per_row(self) -> dict[str, int]:
        """Values per row and class this party encrypts, by whose key (for `Keys.precompute`)."""
        me, secret = self.ctx.party, self.objective.secret_scale
        if self.exact is not None and self.objective.taylor_point == "exact":
            return self.exact.encryptions_per_row()
        if me == self.guest:
            return {self.arbiter or me: 2 if secret else 1}
        if self.arbiter is not None:
            return {self.arbiter: 1 if secret or not self.others else 2}
        return {me: 1, self.guest: 0 if secret or not self.others else 1}

    def prefetch(self, classes: int, wait: bool = False) -> None:
        """Pool randomness for the next batch's encryptions, computed while this party waits for its peers
        (filling a whole epoch ahead would queue this batch's own work behind it in the worker processes)."""
        self.keys.precompute({owner: per_row * self.batch_rows * classes
                              for owner, per_row in self.encryptions_per_row().items() if per_row}, wait)

    def _guest_key(self) -> HEPublicKey:
        return self.keys.shared if self.arbiter is not None else self.keys.peers[self.guest]

    # guest ------------------------------------------------------------------------------------------
    def guest_gradient(self, X: np.ndarray, U: np.ndarray, Y: np.ndarray, exposure: np.ndarray) -> np.ndarray:
        """X (B, d) with the intercept column, U = X W (B, K), Y targets (B, K); returns Xᵀd (d, K)."""
        ctx, party = self.ctx, self.ctx.party
        if self.exact_now:
            return self.exact.guest_gradient(X, _bounded(U, "the guest's partial scores", party), Y)
        c, s = self.objective.guest_terms(_bounded(U, "the guest's partial scores", party), Y, exposure)
        key = self.keys.shared if self.arbiter is not None else self.keys.own[1]
        message = {"c": encrypt_bounded(key, c, "residual terms", party, self.c_frac).to_wire()}
        if self.objective.secret_scale:
            message["s"] = encrypt_bounded(key, s, "residual scales", party).to_wire()
        RESIDUAL.broadcast(ctx, message, self.hosts)
        self.prefetch(U.shape[1])
        parts = HOST_TERM.gather(ctx, self.hosts)
        if self.arbiter is not None:
            total = _sum(EncryptedArray.from_wire(parts[h], key) for h in self.hosts)
            return X.T @ c + decrypt_masked(ctx, self.arbiter, scaled_xt_dot(X, s, total))
        masks, frac_bits = {}, 0
        for host in self.hosts:
            enc = scaled_xt_dot(X, s, EncryptedArray.from_wire(parts[host], self.keys.peers[host]))
            masked, masks[host] = mask(enc)
            frac_bits = enc.frac_bits
            GUEST_PART.send(ctx, host, masked.to_wire())
        for host in self.hosts:
            decrypt_for(ctx, host, self.keys.own[1])
        shares = GUEST_PART_PLAIN.gather(ctx, self.hosts)
        total_ints = sum(_ints(shares[h], masks[h].shape, h) - masks[h] for h in self.hosts)
        return X.T @ c + FixedPoint(frac_bits).decode(total_ints)

    # host -------------------------------------------------------------------------------------------
    def host_gradient(self, X: np.ndarray, U: np.ndarray) -> np.ndarray:
        """X (B, d), U = X W (B, K); returns Xᵀd (d, K) without seeing d."""
        ctx, party, objective = self.ctx, self.ctx.party, self.objective
        if self.exact_now:
            return self.exact.host_gradient(X, _bounded(U, "the host's partial scores", party))
        v = _bounded(objective.host_term(_bounded(U, "the host's partial scores", party)), "host terms", party)
        key = self._guest_key()
        own_key = key if self.arbiter is not None else self.keys.own[1]
        HOST_TERM.send(ctx, self.guest, encrypt_bounded(own_key, v, "host terms", party).to_wire())  # before [[c]]
        received = RESIDUAL.recv(ctx, self.guest)
        c = EncryptedArray.from_wire(received["c"], key)
        if objective.secret_scale:  # [[s·v]] = [[s]]·v: the scale is the guest's secret
            mine = EncryptedArray.from_wire(received["s"], key).mul(v, SCALE_FRAC_BITS)
            if self.others:
                SCALED_TERM.broadcast(ctx, mine.rerandomize().to_wire(), self.others)
        elif self.others:
            SCALED_TERM.broadcast(ctx, encrypt_bounded(key, objective.scale * v, "host terms", party).to_wire(),
                                  self.others)
        self.prefetch(U.shape[1])
        others = SCALED_TERM.gather(ctx, self.others)
        total = _sum([c, *(EncryptedArray.from_wire(others[h], key) for h in self.others)])
        total = total + mine if objective.secret_scale else total + objective.scale * v
        if self.arbiter is not None:
            return decrypt_masked(ctx, self.arbiter, xt_dot(X, total))
        masked, r = mask(xt_dot(X, total))
        GRADIENT.send(ctx, self.guest, masked.to_wire())
        self._decrypt_guest_part(self.keys.own[1])
        return unmask(GRADIENT_PLAIN.recv(ctx, self.guest), r, masked.frac_bits, self.guest)

    def _decrypt_guest_part(self, private: HEPrivateKey) -> None:
        """Decrypt the guest's masked Xgᵀ[[s·v_h]] and hide it further behind masks that cancel across hosts."""
        ctx = self.ctx
        enc = EncryptedArray.from_wire(GUEST_PART.recv(ctx, self.guest), private.public_key)
        plain = private.decrypt(enc.ciphertexts)
        if len(self.hosts) > 1:
            i = self.hosts.index(ctx.party)
            r_next = random_ints(enc.bound.bit_length() + STAT_BITS, enc.shape)
            PAIR_MASK.send(ctx, self.hosts[(i + 1) % len(self.hosts)], r_next)
            r_prev = _ints(PAIR_MASK.recv(ctx, self.hosts[i - 1]), enc.shape, self.hosts[i - 1])
            plain = plain + r_next - r_prev
        GUEST_PART_PLAIN.send(ctx, self.guest, plain)

    # arbiter ----------------------------------------------------------------------------------------
    def serve(self) -> None:
        """Arbiter: decrypt one batch's masked gradients, the guest's then each host's."""
        for party in [self.guest, *self.hosts]:
            decrypt_for(self.ctx, party, self.keys.own[1])


def _sum(arrays: Any) -> EncryptedArray:
    arrays = list(arrays)
    total = arrays[0]
    for other in arrays[1:]:
        total = total + other
    return total


def _ints(values: Any, shape: tuple[int, ...], peer: str) -> np.ndarray:
    ints = np.asarray(values, dtype=object)
    if ints.shape != shape or not all(isinstance(v, int) for v in ints.flat):
        raise ValueError(f"party {peer!r} sent a malformed integer array (shape {ints.shape}, expected {shape})")
    return ints
