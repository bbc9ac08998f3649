"""Secure aggregation for horizontal federated learning (Bonawitz et al., CCS 2017; SecAgg+ of Bell et al. 2020).

Why: in FedAvg the server needs only the sum of the clients' updates, yet a single update can leak a
client's training data. Here the server (role `aggregator`) learns the elementwise sum over the
clients (role `client`) that stayed to the end, and no individual vector, even when clients drop out.

Rounds (the server relays everything; clients never talk directly):

0. advertise keys: each client makes two X25519 key pairs, c (to encrypt shares) and s (for masks),
   and sends the public halves; the server publishes the roster of who answered (U1).
1. share keys: each client draws a self-mask seed b_u and Shamir-shares b_u and its s secret key
   t-of-n among its neighbours (every other client; k random ones in SecAgg+) and itself, each
   pair of shares sealed with AES-GCM under the c-key it agrees with the recipient; the server
   forwards the sealed shares to those who sent theirs (U2).
2. masked input: each client sends y_u = x_u + PRG(b_u) + sum_{v>u} PRG(s_uv) - sum_{v<u} PRG(s_uv)
   mod 2^ring_bits over its neighbours v in U2, where x_u is the clipped fixed-point vector and
   s_uv an X25519 + HKDF seed bound to the job, task, tag and both public keys; PRG is the ChaCha20
   stream of `crypto.prg` keyed by the full 32-byte seed. Who sent it is U3.
3. unmask: the server names the survivors (U3) and the dropped (U2 minus U3); each survivor returns
   its shares of b_v for survivors and of s_v's key for the dropped (never both for one client: it
   refuses). The server rebuilds them, strips the self-masks and the dropped clients' dangling
   pairwise masks, and decodes the sum over U3.

So a client that drops after sending y_u is in the sum (its b_u is rebuilt from others' shares);
one that drops before is not (its s key is rebuilt to cancel its masks in others' inputs). The
result is correct while at least `threshold` holders of each needed secret answer; otherwise the
server fails with how many answered. Waits on clients are bounded by `dropout_timeout`.

Quantisation: each coordinate is clipped to [-clip, clip] and rounded to a multiple of
2^-frac_bits, so the decoded sum of n inputs is within n * 2^-(frac_bits+1) of the sum of the
clipped inputs. The sum must not wrap the ring: n * round(clip * 2^frac_bits) < 2^(ring_bits-1) is
checked up front. ring_bits=32 halves the mask expansion and traffic when that bound allows.

Threat model (semi-honest): see `docs/security.md`. In short, the server and any set of fewer than
`threshold` clients colluding learn nothing beyond the sum over U3 and the sets U1..U3 (plus, for
coalitions, their own inputs). Clients learn nothing about other inputs (nor the sum unless
`reveal_to_clients`). Against an active server, which could name a client as dropped to some
clients and as alive to others, the paper adds a signed consistency round; it is not here.

SecAgg+ (`graph="sparse"`): the server draws a public seed from which everyone derives a random
k-regular graph (a Harary ring of k/2 neighbours each side over a seeded permutation of U1). Masks
and shares go along edges only, so each client does O(k) instead of O(n) key agreements, PRG
streams and shares. Changed guarantees: `threshold` counts share holders of one client (itself and
its k neighbours, so threshold <= k + 1), and a coalition of `threshold` of one client's neighbours
(rather than of all clients) can rebuild its secrets; privacy holds against a coalition of a
random fraction of clients with high probability over the graph rather than deterministically.
If dropouts split the surviving graph, the server could unmask each component's partial sum, so a
client refuses to answer the unmask round unless the survivors form one connected component.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..crypto import aead, kex, shamir
from ..crypto.prg import SeededStream
from ..net.errors import PeerTimeout
from ..runtime.context import Context

AGGREGATOR = "aggregator"
CLIENT = "client"
_SEED_SIZE = 32
_INFO = b"sharedml.secagg/v1\0"


@dataclass(frozen=True)
class SecAggResult:
    """The decoded sum over the `included` clients; `dropped` lists every other client of the task."""

    total: np.ndarray
    included: list[str]
    dropped: list[str]


@dataclass(frozen=True)
class _Setup:
    """Parameters every party must agree on, checked the same way by all of them."""

    tag: str
    context: bytes  # job, task and tag: binds keys and ciphertexts to this one aggregation
    threshold: int
    clip: float
    frac_bits: int
    ring_bits: int
    graph: Literal["complete", "sparse"]
    neighbours: int
    dropout_timeout: float
    reveal_to_clients: bool

    @property
    def dtype(self) -> type[np.unsignedinteger]:
        return np.uint32 if self.ring_bits == 32 else np.uint64

    @property
    def signed(self) -> type[np.signedinteger]:
        return np.int32 if self.ring_bits == 32 else np.int64


def secure_aggregate(
    ctx: Context,
    vector: np.ndarray | None,
    *,
    threshold: int,
    clip: float,
    frac_bits: int = 16,
    ring_bits: Literal[32, 64] = 64,
    graph: Literal["complete", "sparse"] = "complete",
    neighbours: int | None = None,
    dropout_timeout: float = 60.0,
    reveal_to_clients: bool = False,
    tag: str = "secagg",
) -> SecAggResult | None:
    """Sum the clients' float vectors so that the aggregator learns only the sum.

    Clients pass their vector (same shape everywhere) and get None, or the result when
    `reveal_to_clients`; the aggregator passes None and gets a `SecAggResult`. `neighbours` is k for
    `graph="sparse"` (even; default the smallest even number >= 2 log2 n). `dropout_timeout` bounds
    each of the aggregator's four waits on clients; a client that misses one is treated as dropped.
    Clients wait on the aggregator with the channel's timeout, which must therefore exceed
    `dropout_timeout` plus the aggregator's unmasking time. Use a distinct `tag` per call on one
    context (e.g. one per FedAvg round), so a straggler's late message cannot be read as the next call's.
    """
    clients = ctx.parties_with_role(CLIENT)
    aggregators = ctx.parties_with_role(AGGREGATOR)
    setup = _setup(ctx, clients, aggregators, threshold=threshold, clip=clip, frac_bits=frac_bits,
                   ring_bits=ring_bits, graph=graph, neighbours=neighbours, dropout_timeout=dropout_timeout,
                   reveal_to_clients=reveal_to_clients, tag=tag)
    if ctx.role == AGGREGATOR:
        if vector is not None:
            raise ValueError(f"aggregator {ctx.party!r} has no input to a secure aggregation; pass vector=None")
        return _Server(ctx, setup, clients).run()
    if ctx.role != CLIENT:
        raise ValueError(f"party {ctx.party!r} has role {ctx.role!r}; secure aggregation needs "
                         f"roles {AGGREGATOR!r} and {CLIENT!r}")
    if vector is None:
        raise ValueError(f"client {ctx.party!r} passed no vector; every client contributes one")
    return _Client(ctx, setup, aggregators[0]).run(_encode(vector, setup, ctx.party))


def _setup(ctx: Context, clients: list[str], aggregators: list[str], **kw: Any) -> _Setup:
    """Validate the parameters and the roles (with the same messages on every party)."""
    n = len(clients)
    if len(aggregators) != 1 or n < 2:
        raise ValueError(f"secure aggregation needs exactly one {AGGREGATOR!r} and at least two {CLIENT!r} "
                         f"parties; task {ctx.task} has {len(aggregators)} and {n}")
    if kw["ring_bits"] not in (32, 64):
        raise ValueError(f"ring_bits must be 32 or 64, got {kw['ring_bits']}")
    if not (kw["clip"] > 0 and math.isfinite(kw["clip"])) or not 0 <= kw["frac_bits"] < kw["ring_bits"]:
        raise ValueError(f"need a finite clip > 0 and 0 <= frac_bits < ring_bits; got clip={kw['clip']}, "
                         f"frac_bits={kw['frac_bits']}")
    largest = n * round(kw["clip"] * 2.0 ** kw["frac_bits"])
    if largest >= 2 ** (kw["ring_bits"] - 1) or kw["clip"] * 2.0 ** kw["frac_bits"] >= 2.0**53:
        raise ValueError(f"{n} clients x clip {kw['clip']} x 2^{kw['frac_bits']} = {largest} does not fit a signed "
                         f"{kw['ring_bits']}-bit ring; lower clip or frac_bits, or use ring_bits=64")
    k = _degree(kw.pop("neighbours"), kw["graph"], n)
    holders = min(k, n - 1) + 1
    if not 2 <= kw["threshold"] <= holders:
        raise ValueError(f"threshold must be between 2 and the {holders} holders of each client's shares "
                         f"(itself and its neighbours), got {kw['threshold']}")
    if kw["dropout_timeout"] <= 0:
        raise ValueError(f"dropout_timeout must be positive, got {kw['dropout_timeout']}")
    context = _fields(ctx.job_id.encode(), ctx.task.encode(), kw["tag"].encode())
    return _Setup(context=context, neighbours=k, **kw)


def _degree(neighbours: int | None, graph: str, n: int) -> int:
    """k, the number of neighbours of each client (n - 1 for the complete graph)."""
    if graph == "complete":
        if neighbours is not None:
            raise ValueError("neighbours applies only to graph='sparse'")
        return n - 1
    if graph != "sparse":
        raise ValueError(f"graph must be 'complete' or 'sparse', got {graph!r}")
    k = 2 * math.ceil(math.log2(n)) if neighbours is None else neighbours
    if k < 2 or k % 2:
        raise ValueError(f"neighbours must be an even number >= 2 (k/2 on each side of a ring), got {k}")
    return k


def _encode(vector: np.ndarray, setup: _Setup, party: str) -> np.ndarray:
    """Clip to [-clip, clip], round to fixed point, and map into the ring (two's complement).

    Rounds first and clips the integers to ±round(clip·2^frac_bits), which gives the same integers
    as clipping first (rounding is monotone). So a float32 update is scaled in float32 (scaling by a
    power of two is exact there, and so is a bound below 2^24) with half the memory traffic: this
    runs every round on model-sized vectors.
    """
    bound = round(setup.clip * 2.0**setup.frac_bits)
    x = np.asarray(vector)
    x = np.array(x, dtype=np.float32 if x.dtype == np.float32 and bound < 2**24 else np.float64)
    if not (math.isfinite(x.min(initial=0.0)) and math.isfinite(x.max(initial=0.0))):
        raise ValueError(f"client {party!r}: its vector holds NaN or infinity; clean or clip the update first")
    x *= 2.0**setup.frac_bits
    np.rint(x, out=x)
    np.clip(x, -bound, bound, out=x)
    return x.astype(setup.signed).view(setup.dtype)


def _decode(total: np.ndarray, setup: _Setup) -> np.ndarray:
    """Ring elements back to floats, reading them as signed."""
    return total.view(setup.signed).astype(np.float64) / 2.0**setup.frac_bits


def _neighbours(party: str, roster: list[str], setup: _Setup, graph_seed: bytes) -> list[str]:
    """`party`'s neighbours in the mask graph over `roster` (sorted; the same on every party)."""
    others = [p for p in roster if p != party]
    if setup.graph == "complete" or setup.neighbours >= len(roster) - 1:
        return others
    order = np.argsort(SeededStream(graph_seed, domain=b"sharedml.secagg.graph").uint64(len(roster)), kind="stable")
    ring = [roster[i] for i in order]
    at = ring.index(party)
    half = setup.neighbours // 2
    near = {ring[(at + d) % len(ring)] for d in range(-half, half + 1) if d}
    return sorted(near)


def _fields(*parts: bytes) -> bytes:
    """Length-prefixed concatenation, so that no two different field lists encode alike."""
    return b"".join(len(p).to_bytes(4, "big") + p for p in parts)


def _pair_info(setup: _Setup, purpose: bytes, a: tuple[str, bytes], b: tuple[str, bytes]) -> bytes:
    """HKDF info naming the purpose, this aggregation and both parties with their keys, in a fixed order."""
    first, second = sorted([a, b])
    return _fields(_INFO + purpose, setup.context, first[0].encode(), first[1], second[0].encode(), second[1])


def _expand(seed: bytes, size: int, setup: _Setup, domain: bytes) -> np.ndarray:
    return SeededStream(seed, domain=domain).ring(size, setup.ring_bits)


def _pair_mask(private: X25519PrivateKey, me: tuple[str, bytes], peer: tuple[str, bytes], size: int,
               setup: _Setup) -> np.ndarray:
    """PRG(s_uv): the pairwise mask both ends derive from their X25519 agreement."""
    seed = kex.shared_key(private, peer[1], info=_pair_info(setup, b"mask", me, peer))
    return _expand(seed, size, setup, b"sharedml.secagg.pair")


def _self_mask(seed: bytes, size: int, setup: _Setup) -> np.ndarray:
    return _expand(seed, size, setup, b"sharedml.secagg.self")


def _share_aad(setup: _Setup, sender: str, recipient: str) -> bytes:
    return _fields(_INFO + b"share", setup.context, sender.encode(), recipient.encode())


class _Client:
    """One client's side of the four rounds."""

    def __init__(self, ctx: Context, setup: _Setup, server: str) -> None:
        self.ctx, self.setup, self.server = ctx, setup, server
        self.me = ctx.party
        self.c_key = kex.generate_private_key()
        self.s_key = kex.generate_private_key()
        self._box_keys: dict[str, bytes] = {}

    def _tag(self, step: str) -> str:
        return f"{self.setup.tag}/{step}"

    def run(self, x: np.ndarray) -> SecAggResult | None:
        ctx, setup = self.ctx, self.setup
        ctx.send(self.server, self._tag("keys"), {"c": kex.public_key_bytes(self.c_key),
                                                   "s": kex.public_key_bytes(self.s_key)})
        roster = ctx.recv(self.server, self._tag("roster"))
        keys = {p: (bytes(c), bytes(s)) for p, (c, s) in roster["keys"].items()}
        self._check_roster(keys)
        u1 = sorted(keys)
        near = _neighbours(self.me, u1, setup, bytes(roster["graph_seed"]))
        b_seed = secrets.token_bytes(_SEED_SIZE)
        sealed, own = self._sealed_shares(b_seed, near, keys, u1)
        ctx.send(self.server, self._tag("shares"), sealed)
        inbox = ctx.recv(self.server, self._tag("inbox"))
        u2 = sorted(inbox["clients"])
        peers = [v for v in near if v in u2]
        held = self._open_shares(inbox["shares"], peers, keys)
        held[self.me] = own
        ctx.send(self.server, self._tag("masked"), self._masked(x, b_seed, peers, keys))
        request = ctx.recv(self.server, self._tag("unmask"))
        ctx.send(self.server, self._tag("reveal"), self._reveal(request, held, u2, u1, bytes(roster["graph_seed"])))
        if setup.reveal_to_clients:
            result = ctx.recv(self.server, self._tag("result"))
            return SecAggResult(np.asarray(result["total"]), list(result["included"]), list(result["dropped"]))
        return None

    def _check_roster(self, keys: dict[str, tuple[bytes, bytes]]) -> None:
        if self.me not in keys or len(keys) < self.setup.threshold:
            raise ValueError(f"client {self.me!r}: the aggregator's roster has {len(keys)} clients "
                             f"(threshold {self.setup.threshold}) and {'' if self.me in keys else 'not '}this one; "
                             "refusing to continue")
        flat = [k for pair in keys.values() for k in pair]
        if len(set(flat)) != len(flat):
            raise ValueError(f"client {self.me!r}: the roster repeats a public key; refusing to continue")

    def _box_key(self, peer: str, keys: dict[str, tuple[bytes, bytes]]) -> bytes:
        """The AES-GCM key this client shares with `peer` for share transport (agreed once, used both ways)."""
        if peer not in self._box_keys:
            self._box_keys[peer] = kex.shared_key(self.c_key, keys[peer][0], info=_pair_info(
                self.setup, b"share-key", (self.me, keys[self.me][0]), (peer, keys[peer][0])))
        return self._box_keys[peer]

    def _sealed_shares(self, b_seed: bytes, near: list[str], keys: dict[str, tuple[bytes, bytes]],
                       u1: list[str]) -> tuple[dict[str, bytes], tuple[int, int]]:
        """Shamir shares of b_u and s_u^SK for each neighbour, sealed for it, and this client's own pair."""
        holders = sorted([*near, self.me])
        xs = [u1.index(p) + 1 for p in holders]
        b_shares = shamir.split_bytes(b_seed, self.setup.threshold, xs)
        s_shares = shamir.split_bytes(kex.private_key_bytes(self.s_key), self.setup.threshold, xs)
        sealed = {}
        for v in near:
            x = u1.index(v) + 1
            plain = b_shares[x].to_bytes(shamir.SHARE_SIZE, "big") + s_shares[x].to_bytes(shamir.SHARE_SIZE, "big")
            sealed[v] = aead.seal(self._box_key(v, keys), plain, _share_aad(self.setup, self.me, v))
        me_x = u1.index(self.me) + 1
        return sealed, (b_shares[me_x], s_shares[me_x])

    def _open_shares(self, inbox: dict[str, bytes], peers: list[str],
                     keys: dict[str, tuple[bytes, bytes]]) -> dict[str, tuple[int, int]]:
        """Decrypt the shares that the neighbours still in (`peers`) sealed for this client."""
        if sorted(inbox) != peers:
            raise ValueError(f"client {self.me!r}: expected shares from {peers}, the aggregator forwarded "
                             f"{sorted(inbox)}; refusing to continue")
        held = {}
        for u, sealed in inbox.items():
            try:
                plain = aead.open_(self._box_key(u, keys), bytes(sealed), _share_aad(self.setup, u, self.me))
            except aead.DecryptionError as err:
                raise ValueError(f"client {self.me!r}: the shares from client {u!r} do not decrypt ({err}); "
                                 "the aggregator altered or misrouted them") from None
            held[u] = (int.from_bytes(plain[: shamir.SHARE_SIZE], "big"),
                       int.from_bytes(plain[shamir.SHARE_SIZE :], "big"))
        return held

    def _masked(self, x: np.ndarray, b_seed: bytes, peers: list[str],
                keys: dict[str, tuple[bytes, bytes]]) -> np.ndarray:
        """y_u: the input plus its self-mask plus signed pairwise masks with the neighbours still in."""
        flat = x.reshape(-1)
        y = flat + _self_mask(b_seed, flat.size, self.setup)
        me = (self.me, keys[self.me][1])
        for v in peers:
            mask = _pair_mask(self.s_key, me, (v, keys[v][1]), flat.size, self.setup)
            if self.me < v:
                y += mask
            else:
                y -= mask
        return y.reshape(x.shape)

    def _reveal(self, request: dict[str, list[str]], held: dict[str, tuple[int, int]], u2: list[str],
                u1: list[str], graph_seed: bytes) -> dict[str, dict[str, int]]:
        """The shares the server may have: b_v of survivors, s_v key of the dropped; never both for one v."""
        survivors, dropped = list(request["survivors"]), list(request["dropped"])
        both = sorted(set(survivors) & set(dropped))
        if both:
            raise ValueError(f"client {self.me!r}: the aggregator asked for both secrets of {both}; "
                             "that would unmask their input, refusing")
        strangers = sorted(set(survivors + dropped) - set(u2))
        if strangers or self.me not in survivors:
            raise ValueError(f"client {self.me!r}: the unmask request names clients that did not share keys "
                             f"({strangers}) or leaves this one out; refusing")
        if len(survivors) < self.setup.threshold:
            raise ValueError(f"client {self.me!r}: only {len(survivors)} survivors, below the threshold of "
                             f"{self.setup.threshold}; refusing to unmask so few inputs")
        if self.setup.graph == "sparse" and not _connected(survivors, u1, self.setup, graph_seed):
            raise ValueError(f"client {self.me!r}: the surviving clients do not form one connected graph, so "
                             "partial sums would be exposed; refusing to unmask (use more neighbours)")
        return {"b": {v: held[v][0] for v in survivors if v in held},
                "s": {v: held[v][1] for v in dropped if v in held}}


def _connected(survivors: list[str], roster: list[str], setup: _Setup, graph_seed: bytes) -> bool:
    """Whether the survivors form one component of the mask graph restricted to them."""
    alive = set(survivors)
    seen, todo = {survivors[0]}, [survivors[0]]
    while todo:
        for v in _neighbours(todo.pop(), roster, setup, graph_seed):
            if v in alive and v not in seen:
                seen.add(v)
                todo.append(v)
    return seen == alive


class _Server:
    """The aggregator's side: relay, wait (bounded) for each round, then unmask the sum."""

    def __init__(self, ctx: Context, setup: _Setup, clients: list[str]) -> None:
        self.ctx, self.setup, self.clients = ctx, setup, clients

    def _tag(self, step: str) -> str:
        return f"{self.setup.tag}/{step}"

    def _collect(self, step: str, peers: Iterable[str]) -> dict[str, Any]:
        """Each peer's message `step` that arrives within one `dropout_timeout`; fail below the threshold."""
        deadline = time.monotonic() + self.setup.dropout_timeout
        got = {}
        asked = list(peers)
        for peer in asked:
            try:
                got[peer] = self.ctx.recv(peer, self._tag(step), timeout=max(0.0, deadline - time.monotonic()))
            except PeerTimeout:
                continue
        if len(got) < self.setup.threshold:
            raise RuntimeError(f"aggregator {self.ctx.party!r}: only {len(got)} of {len(asked)} clients answered "
                               f"round {step!r} within {self.setup.dropout_timeout:g} s, below the threshold of "
                               f"{self.setup.threshold}; the sum cannot be recovered. Missing: "
                               f"{sorted(set(asked) - set(got))}; rerun with those clients back, a lower "
                               "threshold or a longer dropout_timeout")
        return got

    def run(self) -> SecAggResult:
        ctx = self.ctx
        keys = {p: (bytes(m["c"]), bytes(m["s"])) for p, m in self._collect("keys", self.clients).items()}
        u1 = sorted(keys)
        graph_seed = secrets.token_bytes(_SEED_SIZE)
        ctx.broadcast(self._tag("roster"), {"keys": {p: list(k) for p, k in keys.items()}, "graph_seed": graph_seed},
                      u1)
        sealed = self._collect("shares", u1)
        u2 = sorted(sealed)
        for v in u2:
            ctx.send(v, self._tag("inbox"), {"clients": u2, "shares": {u: sealed[u][v] for u in u2 if v in sealed[u]}})
        masked = self._collect("masked", u2)
        u3 = sorted(masked)
        dropped = sorted(set(u2) - set(u3))
        ctx.broadcast(self._tag("unmask"), {"survivors": u3, "dropped": dropped}, u3)
        reveals = self._collect("reveal", u3)
        total = self._masked_sum(masked)
        self._strip_masks(total, reveals, u1, u3, dropped, keys, graph_seed)
        shape = np.asarray(next(iter(masked.values()))).shape
        result = SecAggResult(_decode(total, self.setup).reshape(shape), u3, sorted(set(self.clients) - set(u3)))
        if self.setup.reveal_to_clients:
            ctx.broadcast(self._tag("result"), {"total": result.total, "included": result.included,
                                                "dropped": result.dropped}, sorted(reveals))
        return result

    def _masked_sum(self, masked: dict[str, Any]) -> np.ndarray:
        """Sum of the y_u in the ring, after checking each has the agreed dtype and the same shape."""
        first = np.asarray(next(iter(masked.values())))
        total = np.zeros(first.size, dtype=self.setup.dtype)
        for u, y in masked.items():
            y = np.asarray(y)
            if y.dtype != self.setup.dtype or y.shape != first.shape:
                raise ValueError(f"client {u!r} sent a masked input of {y.dtype} {y.shape}, expected "
                                 f"{np.dtype(self.setup.dtype)} {first.shape}: all clients must send vectors of "
                                 "one shape with the same ring_bits")
            total += y.reshape(-1)
        return total

    def _strip_masks(self, total: np.ndarray, reveals: dict[str, Any], u1: list[str], u3: list[str],
                     dropped: list[str], keys: dict[str, tuple[bytes, bytes]], graph_seed: bytes) -> None:
        """Remove the survivors' self-masks and the masks they share with dropped clients, in place."""
        for v in u3:
            total -= _self_mask(self._rebuild(v, "b", reveals, u1), total.size, self.setup)
        alive = set(u3)
        for v in dropped:
            private = kex.load_private_key(self._rebuild(v, "s", reveals, u1))
            if kex.public_key_bytes(private) != keys[v][1]:
                raise RuntimeError(f"aggregator {self.ctx.party!r}: the shares of client {v!r}'s mask key rebuild "
                                   "a key that does not match its public key; a client returned a wrong share")
            for u in _neighbours(v, u1, self.setup, graph_seed):
                if u in alive:
                    mask = _pair_mask(private, (v, keys[v][1]), (u, keys[u][1]), total.size, self.setup)
                    if u < v:  # u added +PRG(s_uv)
                        total -= mask
                    else:
                        total += mask

    def _rebuild(self, v: str, kind: Literal["b", "s"], reveals: dict[str, Any], u1: list[str]) -> bytes:
        """Client v's self-mask seed ("b") or mask private key ("s") from the revealed shares."""
        shares = {u1.index(u) + 1: int(r[kind][v]) for u, r in reveals.items() if v in r[kind]}
        what = "self-mask seed" if kind == "b" else "mask key"
        if len(shares) < self.setup.threshold:
            raise RuntimeError(f"aggregator {self.ctx.party!r}: only {len(shares)} clients returned shares of "
                               f"client {v!r}'s {what}, below the threshold of {self.setup.threshold}; the sum "
                               "cannot be recovered. Rerun with fewer dropouts or a lower threshold")
        return shamir.combine_bytes(shares, self.setup.threshold, _SEED_SIZE)
