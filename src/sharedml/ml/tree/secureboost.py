"""SecureBoost training (Cheng et al. 2019): the guest holds the labels, hosts hold other columns of
the same rows; together they grow the trees `PlainBoost` would grow on the joined columns.

Per tree the guest encrypts every row's (g, h), packed into one plaintext, and sends them to each
host. Level by level, each host sums the ciphertexts into bins of its own features (the smaller
child from its rows, its sibling by subtraction), turns the bins into split candidates (encrypted
left-side sums), shuffles them and sends them back. The guest decrypts, scores every candidate with
XGBoost's gain next to its own plaintext features, and tells the winning host only which of *its*
shuffled candidates won; that host alone knows the feature and threshold. Whoever split a node
announces which of the node's rows go left, so every party knows each node's rows (the instance
space SecureBoost reveals to hosts). Leaf weights stay with the guest. `docs/security.md` has the
full list of what each party learns. `SECUREBOOST` below lists every message, in the order they flow.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...crypto.he import Packer
from ...crypto.he_schemes import generate_keypair, public_key_from_dict
from ...crypto.prg import secret_permutation
from ...runtime.context import Context
from ...runtime.messages import Message, Protocol
from ..preprocess.binning import QuantileBinner
from .early_stopping import EarlyStopping, metric_function, resolve_metric
from .he_histogram import Candidates, WireRows, encrypted_histogram, pack_ciphertexts, split_candidates, subtract
from .histogram import build_histogram
from .host_model import HostSplit, NodeKey, splits_to_model
from .joint_predict import routing_bits, tree_output
from .objectives import get_objective, initial_margin, output_column
from .params import SecureBoostParams
from .plain import child_histograms
from .split import Split, find_best_split, leaf_weight, split_gains

VALUE_BITS = 52  # g and h are scaled to integers below 2^52: sums agree with float64 to ~1e-16 relative

# Every message of training, in the order they flow: once, then per tree, per level of the tree.
SETUP = Message("sb/setup", "guest", "host",
                "{public_key, scheme, rows, trees, valid_rows, outputs}: the HE key, the row counts hosts must match, "
                "and the outputs per (g, h) row (K for a multi-output tree)")
READY = Message("sb/ready", "host", "guest", "{rows, valid_rows}: the host's row counts, for the guest to check")
GH = Message("sb/{tree}/gh", "guest", "host",
             "{ciphertexts}: every row's packed (g, h) for the tree, encrypted; or {guest_only: true}: the tree uses "
             "the guest's features only; or, after the last tree, {end: number of trees kept}")
CANDIDATES = Message("sb/{tree}/{depth}/candidates", "host", "guest",
                     "{counts, ciphertexts}: per node of the level, the split candidates on the host's features as "
                     "encrypted left-side (G, H) sums, shuffled, several per ciphertext")
WON = Message("sb/{tree}/{depth}/won", "guest", "host",
              "{node: [positions]}: the nodes the host's candidates won, and which shuffled candidates tied best")
MASKS = Message("sb/{tree}/{depth}/masks", "host", "guest",
                "{node: packed bits}: for each node the host won, which of the node's rows go left")
PARTITION = Message("sb/{tree}/{depth}/partition", "guest", "host",
                    "[(node, left child, right child, packed bits)]: every split of the level and the rows sent left")
VALID = Message("sb/{tree}/valid", "host", "guest",
                "{nodes, bits}: with validation rows, which of them go left at each of the host's nodes of the tree")
SECUREBOOST = Protocol("secureboost", (SETUP, READY, GH, CANDIDATES, WON, MASKS, PARTITION, VALID))


@dataclass
class GuestTree:
    """Tree structure and leaf values, held by the guest only. `owner[i]` is "" for the guest's own
    splits (then `feature`/`bin`/`default_left` say which) and the host's name for a host's split."""

    owner: list[str] = field(default_factory=list)
    feature: list[int] = field(default_factory=list)
    bin: list[int] = field(default_factory=list)
    default_left: list[bool] = field(default_factory=list)
    left: list[int] = field(default_factory=list)
    right: list[int] = field(default_factory=list)
    value: list[float | list[float]] = field(default_factory=list)  # leaves of a multi-output tree: K values

    def add(self) -> int:
        for column, empty in ((self.owner, ""), (self.feature, -1), (self.bin, -1), (self.default_left, False),
                              (self.left, -1), (self.right, -1), (self.value, 0.0)):
            column.append(empty)
        return len(self.owner) - 1

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Node:
    id: int
    rows: np.ndarray
    totals: tuple[float, float]
    hist: Any = None  # guest: plaintext (G, H) of its features; host: encrypted (f, width) sums


def fit_guest(ctx: Context, params: SecureBoostParams, X: np.ndarray, y: np.ndarray,
              X_valid: np.ndarray | None = None, y_valid: np.ndarray | None = None) -> dict[str, Any]:
    """The label holder's part; returns its model (trees, leaf values, binner) and training margins.

    With validation rows (aligned across parties like the training rows) every round is scored on
    them, and with `early_stopping_rounds` training stops after that many rounds without a better
    score, keeping the trees up to the best round.
    """
    hosts = ctx.parties_with_role("host")
    binner = QuantileBinner(params.max_bin).fit(X)
    codes = binner.transform(X)
    keys = generate_keypair(params.he_scheme, params.key_bits)
    y = np.asarray(y, dtype=np.float64)
    num_class = params.num_class
    if params.objective == "multi:softmax" and num_class is None:
        num_class = int(y.max()) + 1
    objective = get_objective(params.objective, num_class)
    sampling = params.sampling.with_seed()
    multi = params.multi_strategy == "multi_output_tree" and objective.n_outputs > 1
    per_round = 1 if multi else objective.n_outputs
    n_trees = params.n_estimators * per_round
    valid_rows = None if X_valid is None else len(X_valid)
    SETUP.broadcast(ctx, {"public_key": keys[0].to_dict(), "scheme": params.he_scheme, "rows": len(X),
                          "trees": n_trees, "valid_rows": valid_rows, "outputs": objective.n_outputs if multi else 1},
                    hosts)
    for host, answer in READY.gather(ctx, hosts).items():
        if answer["rows"] != len(X):
            raise ValueError(f"host {host!r} has {answer['rows']} rows but guest {ctx.party!r} has {len(X)}: align "
                             "the parties' rows first (a psi task) and feed its outputs to this task")
        if answer["valid_rows"] != valid_rows:
            raise ValueError(f"host {host!r} has {answer['valid_rows']} validation rows but guest {ctx.party!r} has "
                             f"{valid_rows}: give every party a `validate` input, aligned like the training rows")
    base = objective.base_margin(y)
    margin = initial_margin(base, len(y))
    valid = None if X_valid is None else _Validation(binner.transform(X_valid), np.asarray(y_valid, np.float64),
                                                     base, params, num_class)
    trees: list[GuestTree] = []
    best_margin = margin.copy()  # training margins at the best validation round
    for round_ in range(params.n_estimators):
        g, h = objective.grad_hess(y, margin)
        involved = hosts if round_ >= params.guest_only else []
        for k in range(per_round):
            t = len(trees)
            gk, hk = sampling.rows(t, *((g, h) if multi else (output_column(g, k), output_column(h, k))))
            if not involved:
                GH.broadcast(ctx, {"guest_only": True}, hosts, tree=t)
            columns = sampling.columns(0, t, X.shape[1])
            tree, leaves = _grow_guest(ctx, params, t, codes, columns, gk, hk, keys, involved, t + 1 < n_trees)
            trees.append(tree)
            target = margin if multi else output_column(margin, k)
            for node, rows in leaves:
                target[rows] += tree.value[node]
            if valid is not None:
                valid.add_tree(ctx, t, None if multi else k, tree, binner.missing_bin, involved)
            ctx.progress(t + 1, n_trees, f"tree {t + 1} of {n_trees} (round {round_ + 1})")
        if valid is not None:
            stop = valid.score_round(ctx, round_)
            if valid.stopper.best_round == round_:
                best_margin = margin.copy()
            if stop:
                break
    kept = len(trees) if valid is None else (valid.stopper.best_round + 1) * per_round
    GH.broadcast(ctx, {"end": kept}, hosts, tree=len(trees))
    model = {"role": "guest", "objective": params.objective, "num_class": num_class, "base_margin": base.tolist(),
             "binner": binner.to_dict(), "trees": [t.to_dict() for t in trees[:kept]], "hosts": hosts,
             "multi_output": multi}
    if valid is not None:
        model["best_round"] = valid.stopper.best_round
    return {"model": model, "margin": margin if valid is None else best_margin}


class _Validation:
    """The guest's view of the validation rows: margins so far, the score per round, the stopping rule."""

    def __init__(self, codes: np.ndarray, y: np.ndarray, base: np.ndarray, params: SecureBoostParams,
                 num_class: int | None):
        self.codes, self.y = codes, y
        self.margin = initial_margin(base, len(y))
        self.metric = resolve_metric(params.eval_metric, params.objective)
        self.score = metric_function(self.metric, params.objective, num_class)
        self.stopper = EarlyStopping(self.metric, params.early_stopping_rounds)

    def add_tree(self, ctx: Context, t: int, k: int | None, tree: GuestTree, missing: int, hosts: list[str]) -> None:
        """Add tree `t` to output `k` (None: a multi-output tree, to all outputs) of the validation margins."""
        directions = {host: VALID.recv(ctx, host, tree=t) for host in hosts}

        def host_bits(owner: str, node: int) -> np.ndarray:
            answer = directions[owner]
            return np.unpackbits(answer["bits"][answer["nodes"].index(node)], count=len(self.y)).astype(bool)

        target = self.margin if k is None else output_column(self.margin, k)
        target += tree_output(tree.to_dict(), self.codes, missing, host_bits)

    def score_round(self, ctx: Context, round_: int) -> bool:
        score = self.score(self.y, self.margin)
        ctx.metrics.log(f"valid_{self.metric}", score, step=round_)
        return self.stopper.update(round_, score)


def _grow_guest(ctx: Context, params: SecureBoostParams, t: int, codes: np.ndarray, columns: np.ndarray, g: np.ndarray,
                h: np.ndarray, keys: tuple, hosts: list[str], more_trees: bool
                ) -> tuple[GuestTree, list[tuple[int, np.ndarray]]]:
    public_key, private_key = keys
    # Fixed point with VALUE_BITS bits below the largest |g| or h (float64's precision relative to it).
    magnitude = int(np.ceil(np.log2(max(np.abs(g).max(initial=0), h.max(initial=0), 2.0**-60))))
    scale = 2.0 ** (VALUE_BITS - magnitude)
    packer = slot_layout(public_key, len(g))
    outputs = 1 if g.ndim == 1 else g.shape[1]
    if 2 * outputs > packer.slots:
        raise ValueError(f"a multi-output tree for {outputs} classes needs {2 * outputs} slots per plaintext, this key "
                         f"and row count give {packer.slots}: use multi_strategy one_output_per_tree")
    if hosts:  # per row g_0, h_0, g_1, h_1, ... in one plaintext
        ints = np.rint(np.stack([g, h], axis=-1).reshape(len(g), 2 * outputs) * scale).astype(np.int64)
        cipher = packer.encrypt(private_key, ints)
        wire = {"ciphertexts": public_key.ciphertexts_to_bytes(cipher.ciphertexts)}  # hosts need no layout
        GH.broadcast(ctx, wire, hosts, tree=t)
        if more_trees and hasattr(public_key, "precompute"):  # the next tree's randomness, while hosts work
            public_key.precompute(len(g), background=True)

    tree = GuestTree()
    sampled = codes[:, columns]  # histograms only of the features this tree may use
    rows = np.arange(len(g))
    root_hist = build_histogram(sampled, rows, g, h, params.max_bin)
    level = [_Node(tree.add(), rows, (g.sum(axis=0), h.sum(axis=0)), root_hist)]
    leaves: list[_Node] = []
    for depth in range(params.max_depth):
        offers = {host: CANDIDATES.recv(ctx, host, tree=t, depth=depth) for host in hosts}
        splits, winners = _choose_splits(ctx, params, t, depth, level, columns, offers, private_key, packer, scale)
        masks = {host: MASKS.recv(ctx, host, tree=t, depth=depth) for host in winners}
        partition, next_level = [], []
        for node in level:
            split = splits.get(node.id)
            if split is None:
                leaves.append(node)
                continue
            owner, chosen = split
            if owner == "":
                goes_left = chosen.goes_left(codes[node.rows, chosen.feature], params.max_bin)
                tree.feature[node.id], tree.bin[node.id] = chosen.feature, chosen.bin
                tree.default_left[node.id] = chosen.default_left
            else:
                goes_left = _unpack_mask(masks[owner][node.id], len(node.rows))
            tree.owner[node.id] = owner
            left_rows, right_rows = node.rows[goes_left], node.rows[~goes_left]
            left_id, right_id = tree.add(), tree.add()
            tree.left[node.id], tree.right[node.id] = left_id, right_id
            partition.append((node.id, left_id, right_id, np.packbits(goes_left)))
            with_hist = depth + 1 < params.max_depth
            hists = child_histograms(sampled, g, h, params.max_bin, node.hist, left_rows, right_rows) \
                if with_hist else (None, None)
            if owner == "":
                left_totals, right_totals = (chosen.g_left, chosen.h_left), (chosen.g_right, chosen.h_right)
            else:  # the host routed by its own pick among tied candidates (see _choose_splits): sum those rows
                left_totals = (g[left_rows].sum(axis=0), h[left_rows].sum(axis=0))
                right_totals = (node.totals[0] - left_totals[0], node.totals[1] - left_totals[1])
            next_level += [_Node(left_id, left_rows, left_totals, hists[0]),
                           _Node(right_id, right_rows, right_totals, hists[1])]
        PARTITION.broadcast(ctx, partition, hosts, tree=t, depth=depth)
        level = next_level
        if not level:
            break
    for node in leaves + level:
        value = params.learning_rate * leaf_weight(*node.totals, params.reg_lambda)
        tree.value[node.id] = value.tolist() if np.ndim(value) else float(value)
    return tree, [(node.id, node.rows) for node in leaves + level]


def _choose_splits(ctx: Context, params: SecureBoostParams, t: int, depth: int, level: list[_Node], columns: np.ndarray,
                   offers: dict[str, Any], private_key, packer: Packer,
                   scale: float) -> tuple[dict[int, tuple[str, Split]], list[str]]:
    """Best split of every node of a level (owner "" = the guest), and the hosts that won any.

    Each host hears which of its shuffled candidates won, per node (several if they tie: it breaks
    the tie by its own feature and bin order, as the plaintext algorithm does). Tied candidates can differ
    in their exact left sums, and which of them comes first here depends on the host's random shuffle, so
    the children's totals of a host's split are summed from the rows the host sends left, not taken from
    the candidate seen here: otherwise trees differed from run to run with the same seed."""
    public_key = private_key.public_key
    decrypted = {}
    outputs = np.size(level[0].totals[0])
    per = packer.slots // (2 * outputs)
    for host, offer in offers.items():
        counts = [int(c) for c in offer["counts"]]
        cipher = public_key.ciphertexts_from_bytes(offer["ciphertexts"], (-(-sum(counts) // per),))
        slots = packer.unpack(private_key.decrypt(cipher), packer.max_terms)[:, :2 * outputs * per]
        sums = slots.reshape(-1, 2 * outputs)[:sum(counts)].astype(np.float64) / scale
        decrypted[host] = np.split(sums, np.cumsum(counts)[:-1])
    splits: dict[int, tuple[str, Split]] = {}
    wins: dict[str, dict[int, list[int]]] = {host: {} for host in offers}
    for i, node in enumerate(level):
        best = find_best_split(*node.hist, params, node.totals, features=columns)
        owner, tied = "", None
        for host in offers:  # hosts in party order: on equal gain the guest, then the earlier host, wins
            sums = decrypted[host][i]
            if not len(sums):
                continue
            G, H = sums[:, 0::2], sums[:, 1::2]  # (m, K): left sums per output
            if outputs == 1:
                G, H = G[:, 0], H[:, 0]
            gains = split_gains(G, H, *node.totals, params)
            top = gains.max()
            if np.isfinite(top) and top > 1e-6 and top >= params.gamma and (best is None or top > best.gain):
                k = int(np.flatnonzero(gains == top)[0])
                best = Split(-1, -1, False, float(top), G[k], H[k], node.totals[0] - G[k], node.totals[1] - H[k])
                owner, tied = host, np.flatnonzero(gains == top).tolist()
        if best is None:
            continue
        splits[node.id] = (owner, best)
        if owner:
            wins[owner][node.id] = tied
    for host in offers:
        WON.send(ctx, host, wins[host], tree=t, depth=depth)
    return splits, [host for host in offers if wins[host]]


def slot_layout(public_key, rows: int) -> Packer:
    """The packing of (g, h) and of candidate sums, from public facts only (key size, row count), so
    hosts need no message about it and learn nothing from it: slots hold sums of `rows` values below
    2^VALUE_BITS (for 30,000 rows, 68-bit slots: five candidates' (G, H) per 2048-bit OU plaintext)."""
    return Packer.for_key(public_key, 1 << VALUE_BITS, rows)


def _unpack_mask(packed: np.ndarray, n: int) -> np.ndarray:
    return np.unpackbits(np.asarray(packed, dtype=np.uint8), count=n).astype(bool)


def fit_host(ctx: Context, params: SecureBoostParams, X: np.ndarray,
             X_valid: np.ndarray | None = None) -> dict[str, Any]:
    """A feature holder's part; returns its model: its binner and the splits it owns (feature, bin)."""
    guest = ctx.parties_with_role("guest")[0]
    block = ctx.parties_with_role("host").index(ctx.party) + 1  # its columns' block for column sampling
    binner = QuantileBinner(params.max_bin).fit(X)
    codes = binner.transform(X)
    setup = SETUP.recv(ctx, guest)
    public_key = public_key_from_dict(setup["scheme"], setup["public_key"])
    valid_rows = None if X_valid is None else len(X_valid)
    READY.send(ctx, guest, {"rows": len(X), "valid_rows": valid_rows})
    if setup["rows"] != len(X) or setup["valid_rows"] != valid_rows:
        raise ValueError(f"host {ctx.party!r} has {len(X)} rows ({valid_rows} for validation) but the guest has "
                         f"{setup['rows']} ({setup['valid_rows']}); align the rows first (a psi task) and give "
                         "`validate` to every party or to none")
    valid_codes = None if X_valid is None else binner.transform(X_valid)
    sampling = params.sampling.with_seed()
    n_bins = np.array(binner.n_bins)
    splits: dict[NodeKey, HostSplit] = {}
    for t in itertools.count():
        wire = GH.recv(ctx, guest, tree=t)
        if "end" in wire:
            kept = int(wire["end"])
            break
        if not wire.get("guest_only"):
            columns = sampling.columns(block, t, X.shape[1])
            _grow_host(ctx, params, t, codes, columns, n_bins, public_key, wire, guest, splits, setup["outputs"])
            if valid_codes is not None:
                nodes = sorted(key.node for key in splits if key.tree == t)
                bits = routing_bits(valid_codes, [splits[NodeKey(t, node)] for node in nodes], binner.missing_bin)
                VALID.send(ctx, guest, {"nodes": nodes, "bits": bits}, tree=t)
        ctx.progress(t + 1, int(setup["trees"]), f"tree {t + 1}")
    kept_splits = {key: split for key, split in splits.items() if key.tree < kept}
    return {"model": {"role": "host", "binner": binner.to_dict(), "splits": splits_to_model(kept_splits)}}


def _grow_host(ctx: Context, params: SecureBoostParams, t: int, codes: np.ndarray, columns: np.ndarray,
               n_bins: np.ndarray, public_key, wire: dict[str, Any], guest: str, splits: dict[NodeKey, HostSplit],
               outputs: int) -> None:
    modulus = public_key.ciphertext_modulus
    layout = slot_layout(public_key, len(codes))
    cipher = WireRows.from_wire(wire["ciphertexts"], len(codes), public_key.ciphertexts_from_bytes)
    width = params.max_bin + 1
    sampled = codes[:, columns]  # histograms only of the features this tree may use
    rows = np.arange(len(codes))
    level = [_Node(0, rows, (0.0, 0.0), encrypted_histogram(cipher, sampled, rows, width, modulus))]
    for depth in range(params.max_depth):
        offers, kept = [], []
        for node in level:
            has_missing = (sampled[node.rows] == params.max_bin).any(axis=0)
            cands = split_candidates(node.hist, has_missing, n_bins[columns], modulus)
            cands.feature = columns[cands.feature]
            kept.append(_permuted(cands, secret_permutation(len(cands.left))))
            offers.append(kept[-1].left)
        per = layout.slots // (2 * outputs)  # candidates per ciphertext: each fills 2·outputs slots
        packed = pack_ciphertexts(np.concatenate(offers), per, 2 * outputs * layout.slot_bits, modulus)
        CANDIDATES.send(ctx, guest, {"counts": [len(o) for o in offers],
                                     "ciphertexts": public_key.ciphertexts_to_bytes(packed)}, tree=t, depth=depth)
        won = WON.recv(ctx, guest, tree=t, depth=depth)
        masks = {}
        by_id = {node.id: (node, cands) for node, cands in zip(level, kept, strict=True)}
        for node_id, tied in won.items():
            node, cands = by_id[int(node_id)]
            k = min(tied, key=lambda i: (cands.feature[i], cands.default_left[i],
                                         -cands.bin[i] if cands.default_left[i] else cands.bin[i]))
            feature, b, default_left = int(cands.feature[k]), int(cands.bin[k]), bool(cands.default_left[k])
            splits[NodeKey(t, int(node_id))] = HostSplit(feature, b, default_left)
            codes_f = codes[node.rows, feature]
            goes_left = np.where(codes_f == params.max_bin, default_left, codes_f <= b)
            masks[int(node_id)] = np.packbits(goes_left)
        if masks:
            MASKS.send(ctx, guest, masks, tree=t, depth=depth)
        partition = PARTITION.recv(ctx, guest, tree=t, depth=depth)
        next_level = []
        for node_id, left_id, right_id, packed in partition:
            node = by_id[int(node_id)][0]
            goes_left = _unpack_mask(packed, len(node.rows))
            left_rows, right_rows = node.rows[goes_left], node.rows[~goes_left]
            hists = (None, None)
            if depth + 1 < params.max_depth:
                small, big = (left_rows, 0) if len(left_rows) <= len(right_rows) else (right_rows, 1)
                built = encrypted_histogram(cipher, sampled, small, width, modulus)
                other = subtract(node.hist, built, modulus)
                hists = (built, other) if big == 0 else (other, built)
            next_level += [_Node(int(left_id), left_rows, (0.0, 0.0), hists[0]),
                           _Node(int(right_id), right_rows, (0.0, 0.0), hists[1])]
        level = next_level
        if not level:
            break


def _permuted(cands: Candidates, order: np.ndarray) -> Candidates:
    return Candidates(cands.feature[order], cands.bin[order], cands.default_left[order], cands.left[order])
