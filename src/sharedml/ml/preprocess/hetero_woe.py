"""hetero_binning's exchange: per-bin event counts of host features, summed on encrypted labels.

1. The guest makes a fresh key pair (OU or Paillier) and sends each host its labels (0/1), each row
   encrypted on its own.
2. Each host multiplies, for every bin of every feature, the ciphertexts of the rows in that bin
   (a homomorphic sum: the bin's number of events, still encrypted), re-randomises the sums (a bare
   product of the guest's own ciphertexts could be matched against subsets of them), and returns
   them with the plaintext row count of each bin, which it knows itself.
3. The guest decrypts the sums; with the row counts it has each host bin's event and non-event
   counts, from which it computes WOE and IV (`woe.py`). Only if the hosts need their WOE (to
   transform their columns) does it send each host the WOE of its own bins.

Features are named by keys: the guest's by their column names, a host's by ``party:x<j>`` (its
j-th binned column) or, with anonymous off, ``party:<column name>``. `docs/security.md` lists what
each party learns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...crypto.he_schemes import generate_keypair, public_key_from_dict
from ...runtime.context import Context
from ..tree.he_histogram import WireRows, encrypted_histogram
from .woe import bin_counts


@dataclass
class HostBins:
    """What the guest learns of one host's binned features: keys and per-bin counts (features, width)."""

    keys: list[str]
    rows: np.ndarray
    events: np.ndarray


def guest_exchange(ctx: Context, y: np.ndarray, scheme: str, key_bits: int) -> dict[str, HostBins]:
    """Send the encrypted labels to every host; return each host's decrypted per-bin counts."""
    hosts = ctx.parties_with_role("host")
    public_key, private_key = generate_keypair(scheme, key_bits)
    labels = private_key.encrypt(np.asarray(y, dtype=np.int64))
    ctx.broadcast("binning/labels", {"scheme": scheme, "public_key": public_key.to_dict(), "rows": len(y),
                                     "labels": public_key.ciphertexts_to_bytes(labels)}, hosts)
    found: dict[str, HostBins] = {}
    for host, reply in ctx.gather("binning/sums", hosts).items():
        rows = np.asarray(reply["rows"], dtype=np.int64)
        keys = [str(k) for k in reply["keys"]]
        if rows.ndim != 2 or rows.shape[0] != len(keys) or (len(keys) and (rows.sum(axis=1) != len(y)).any()):
            raise ValueError(f"host {host!r} sent per-bin row counts that do not cover the {len(y)} rows of each "
                             "feature; every party must run the same sharedml version on aligned rows")
        sums = public_key.ciphertexts_from_bytes(reply["events"], rows.shape)
        events = np.asarray(private_key.decrypt(sums), dtype=np.int64).reshape(rows.shape)
        if ((events < 0) | (events > rows)).any():
            raise ValueError(f"host {host!r} sent event sums outside [0, rows of the bin]; the exchange is corrupt")
        found[host] = HostBins(keys, rows, events)
    return found


def host_exchange(ctx: Context, codes: np.ndarray, width: int, keys: list[str], key_bits: int) -> None:
    """Sum the guest's encrypted labels per bin of each of this host's features and send them back."""
    guest = ctx.parties_with_role("guest")[0]
    setup = ctx.recv(guest, "binning/labels")
    if setup["rows"] != len(codes):
        raise ValueError(f"host {ctx.party!r} has {len(codes)} rows but guest {guest!r} has {setup['rows']}: align "
                         "the parties' rows first (a psi task) and feed its `data` outputs to this task")
    public_key = public_key_from_dict(setup["scheme"], setup["public_key"])
    if public_key.bits < key_bits:
        raise ValueError(f"guest {guest!r} sent a {public_key.bits}-bit key, but `key_bits` is {key_bits}")
    labels = WireRows.from_wire(setup["labels"], len(codes), public_key.ciphertexts_from_bytes)
    rows, _ = bin_counts(codes, width)
    sums = (encrypted_histogram(labels, codes, np.arange(len(codes)), width, public_key.ciphertext_modulus)
            if keys else np.empty((0, width), dtype=object))
    ctx.send(guest, "binning/sums", {"keys": keys, "rows": rows,
                                     "events": public_key.ciphertexts_to_bytes(public_key.rerandomize(sums))})
