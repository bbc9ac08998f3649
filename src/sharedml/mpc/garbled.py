"""Yao garbled circuits for two parties: comparison and equality of private integers, in batches.

Why: comparisons (x > y, x == y) are cheap as boolean circuits but expensive on arithmetic shares, and
a garbled circuit evaluates one in a constant number of rounds. Each gate works on numpy arrays of
labels of shape (batch, 16), so one garbling covers 10^4–10^5 independent comparisons.

Scheme (semi-honest, 128-bit security):

* free-XOR (Kolesnikov–Schneider 2008): wire w has labels W0 and W1 = W0 ⊕ R for a secret global
  offset R whose lowest bit is 1, so XOR and NOT gates need no ciphertexts;
* point-and-permute: the lowest bit of a label tells the evaluator which row to use, and is independent
  of the value it encodes because W0's lowest bit is random;
* half-gates (Zahur–Rosulek–Evans 2015): two ciphertexts per AND gate;
* hash: the tweakable circular correlation-robust fixed-key AES hash of `ot.tccr_hash`, tweaked by the
  gate index and the instance, so every (gate, instance, half) has its own tweak.

Protocol (`compare`): the garbler garbles, sends the tables, the labels of its own input bits and the
decoding bits; the evaluator obtains the labels of its input bits by chosen-message OT, evaluates,
decodes, and sends the result bits back. What each party learns: the evaluator sees one pseudo-random
label per wire and the tables, which reveal nothing beyond the output; the garbler sees only OT
messages (independent of the evaluator's bits) and the output. Both learn the output and nothing else.
Semi-honest only: a malicious garbler could garble another function, a malicious evaluator could
report a wrong result.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import numpy as np

from ..crypto.prg import SeededStream
from ..runtime.context import Context
from .ot import BLOCK, OTExtension, tccr_hash

__all__ = [
    "Circuit",
    "Garbling",
    "Gate",
    "comparison_circuit",
    "compare",
    "decode",
    "encode",
    "equality_circuit",
    "evaluate_garbled",
    "evaluate_plain",
    "garble",
    "to_bits",
]

_BATCH_CHUNK = 1 << 13  # instances garbled per round trip, bounding labels and tables to tens of MiB


# ---------------------------------------------------------------------------------------------------
# Circuits
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gate:
    """One gate: op is "xor", "and" (two inputs) or "not" (one input); `output` is a new wire."""

    op: str
    inputs: tuple[int, ...]
    output: int


@dataclass(frozen=True)
class Circuit:
    """A boolean circuit. Wires 0..g-1 are the garbler's input bits, g..g+e-1 the evaluator's, and
    every gate creates the next wire; `outputs` lists the wires revealed."""

    garbler_inputs: int
    evaluator_inputs: int
    gates: tuple[Gate, ...]
    outputs: tuple[int, ...]

    @property
    def inputs(self) -> int:
        return self.garbler_inputs + self.evaluator_inputs

    @property
    def and_gates(self) -> int:
        return sum(gate.op == "and" for gate in self.gates)

    def last_uses(self) -> list[tuple[int, ...]]:
        """For each gate, the wires read for the last time there: their batched labels can be freed."""
        last = {wire: k for k, gate in enumerate(self.gates) for wire in gate.inputs}
        plan: list[list[int]] = [[] for _ in self.gates]
        for wire, k in last.items():
            if wire not in self.outputs:
                plan[k].append(wire)
        return [tuple(wires) for wires in plan]


class _Builder:
    """Appends gates, numbering each new wire."""

    def __init__(self, garbler_inputs: int, evaluator_inputs: int) -> None:
        self.garbler_inputs, self.evaluator_inputs = garbler_inputs, evaluator_inputs
        self.wires = garbler_inputs + evaluator_inputs
        self.gates: list[Gate] = []

    def gate(self, op: str, *inputs: int) -> int:
        self.gates.append(Gate(op, inputs, self.wires))
        self.wires += 1
        return self.wires - 1

    def build(self, outputs: list[int]) -> Circuit:
        return Circuit(self.garbler_inputs, self.evaluator_inputs, tuple(self.gates), tuple(outputs))


def _operands(builder: _Builder, bits: int, signed: bool) -> tuple[list[int], list[int]]:
    """Input wires of x and y, least significant bit first; a signed MSB is flipped (free NOT gates),
    which maps two's-complement order onto unsigned order."""
    x, y = list(range(bits)), list(range(bits, 2 * bits))
    if signed:
        x[-1], y[-1] = builder.gate("not", x[-1]), builder.gate("not", y[-1])
    return x, y


def comparison_circuit(bits: int, *, signed: bool = False) -> Circuit:
    """[x > y] for the garbler's x and the evaluator's y, `bits` wide, with `bits` AND gates.

    Ripple from the least significant bit: c_{i+1} = x_i ⊕ ((x_i ⊕ c_i) ∧ (y_i ⊕ c_i)) keeps c_i when
    x_i = y_i and becomes x_i otherwise, so c_bits = [x > y]; c_1 = x_0 ∧ ¬y_0 since c_0 = 0.
    """
    builder = _Builder(bits, bits)
    x, y = _operands(builder, bits, signed)
    carry = builder.gate("and", x[0], builder.gate("not", y[0]))
    for xi, yi in zip(x[1:], y[1:], strict=True):
        both = builder.gate("and", builder.gate("xor", xi, carry), builder.gate("xor", yi, carry))
        carry = builder.gate("xor", xi, both)
    return builder.build([carry])


def equality_circuit(bits: int) -> Circuit:
    """[x == y]: AND of the bitwise XNORs in a balanced tree, `bits` - 1 AND gates."""
    builder = _Builder(bits, bits)
    level = [builder.gate("not", builder.gate("xor", i, bits + i)) for i in range(bits)]
    while len(level) > 1:
        paired = [builder.gate("and", a, b) for a, b in zip(level[::2], level[1::2], strict=False)]
        level = paired + level[len(paired) * 2 :]
    return builder.build(level)


_PLAIN_OPS = {"xor": np.logical_xor, "and": np.logical_and, "not": np.logical_not}


def evaluate_plain(circuit: Circuit, x_bits: np.ndarray, y_bits: np.ndarray) -> np.ndarray:
    """Reference evaluation in the clear: (batch, garbler_inputs) and (batch, evaluator_inputs) bool
    inputs give (batch, outputs) bool."""
    wires = [*np.asarray(x_bits, bool).T, *np.asarray(y_bits, bool).T]
    for gate in circuit.gates:
        wires.append(_PLAIN_OPS[gate.op](*(wires[w] for w in gate.inputs)))
    return np.stack([wires[w] for w in circuit.outputs], axis=1)


def to_bits(values: np.ndarray, bits: int, *, signed: bool) -> np.ndarray:
    """(n,) integers as (n, bits) bools, least significant first (two's complement when signed).

    Raises if a value does not fit, instead of silently comparing a wrapped value.
    """
    values = np.asarray(values)
    if values.ndim != 1 or values.dtype.kind not in "iu":
        raise TypeError(f"values must be a 1-D integer array, got {values.dtype} of shape {values.shape}")
    if not 1 <= bits <= 64:
        raise ValueError("bits must be between 1 and 64")
    low, high = (-(1 << (bits - 1)), 1 << (bits - 1)) if signed else (0, 1 << bits)
    if values.size and (int(values.min()) < low or int(values.max()) >= high):
        raise ValueError(f"values must lie in [{low}, {high}) for {bits}-bit {'signed' if signed else 'unsigned'}")
    words = values.astype(np.uint64)
    return ((words[:, None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)).astype(bool)


# ---------------------------------------------------------------------------------------------------
# Garbling and evaluation (half-gates over free-XOR), batched
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Garbling:
    """The garbler's result. `tables` goes to the evaluator; `zero_labels` and `offset` stay secret."""

    tables: np.ndarray  # (and gates, 2, batch, 16): the half-gate ciphertexts T_G, T_E of each AND gate
    zero_labels: np.ndarray  # (batch, inputs, 16): label of bit 0 of every input wire
    offset: np.ndarray  # (16,): R, the free-XOR offset, lowest bit 1
    decoding: np.ndarray  # (batch, outputs) bool: lowest bit of each output's zero label


def _lsb(labels: np.ndarray) -> np.ndarray:
    """Point-and-permute bit of each label, as a (batch, 1) 0/1 uint8 column ready to multiply rows."""
    return labels[:, :1] & 1


def _tweaks(gate_index: int, batch: int) -> np.ndarray:
    """Distinct even tweaks for (gate, instance); the evaluator half uses tweak + 1."""
    return (np.uint64(gate_index * batch) + np.arange(batch, dtype=np.uint64)) * np.uint64(2)


def encode(zero_labels: np.ndarray, offset: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """Active labels for input bits: W0 ⊕ bit·R (labels (..., 16), bits of the same leading shape)."""
    return zero_labels ^ (np.asarray(bits, np.uint8)[..., None] * offset)


def _garble_and(a0: np.ndarray, b0: np.ndarray, offset: np.ndarray, tweak: np.ndarray) -> tuple[np.ndarray, ...]:
    """Half-gates garbling of one AND gate for the whole batch: (zero label of output, T_G, T_E)."""
    pa, pb = _lsb(a0), _lsb(b0)
    both = np.concatenate([tweak, tweak + np.uint64(1)])
    h = tccr_hash(np.concatenate([a0, b0, a0 ^ offset, b0 ^ offset]), np.concatenate([both, both]))
    ha0, hb0, ha1, hb1 = np.split(h, 4)
    t_g = ha0 ^ ha1 ^ pb * offset  # generator half: a ∧ p_b
    t_e = hb0 ^ hb1 ^ a0  # evaluator half: a ∧ (b ⊕ p_b), the evaluator knowing b ⊕ p_b
    w0 = ha0 ^ pa * t_g ^ hb0 ^ pb * (t_e ^ a0)
    return w0, t_g, t_e


def garble(circuit: Circuit, batch: int) -> Garbling:
    """Garble `batch` independent copies of `circuit` under one fresh offset R and fresh input labels."""
    offset = np.frombuffer(bytearray(secrets.token_bytes(BLOCK)), dtype=np.uint8)
    offset[0] |= 1
    labels = SeededStream(secrets.token_bytes(32), domain=b"sharedml.mpc.garbled.labels").bytes(
        batch * circuit.inputs * BLOCK)
    zero_labels = np.frombuffer(labels, dtype=np.uint8).reshape(batch, circuit.inputs, BLOCK)
    wires = {w: zero_labels[:, w] for w in range(circuit.inputs)}
    tables = np.empty((circuit.and_gates, 2, batch, BLOCK), dtype=np.uint8)
    table = 0
    for k, (gate, dead) in enumerate(zip(circuit.gates, circuit.last_uses(), strict=True)):
        a = wires[gate.inputs[0]]
        if gate.op == "and":
            wires[gate.output], tables[table, 0], tables[table, 1] = _garble_and(
                a, wires[gate.inputs[1]], offset, _tweaks(k, batch))
            table += 1
        else:
            wires[gate.output] = a ^ (offset if gate.op == "not" else wires[gate.inputs[1]])
        for wire in dead:
            del wires[wire]
    decoding = np.stack([_lsb(wires[w])[:, 0] for w in circuit.outputs], axis=1).astype(bool)
    return Garbling(tables, zero_labels, offset, decoding)


def _evaluate_and(a: np.ndarray, b: np.ndarray, t_g: np.ndarray, t_e: np.ndarray, tweak: np.ndarray) -> np.ndarray:
    """Half-gates evaluation: one hash per half, ciphertext rows selected by the labels' colour bits."""
    ha, hb = np.split(tccr_hash(np.concatenate([a, b]), np.concatenate([tweak, tweak + np.uint64(1)])), 2)
    return ha ^ _lsb(a) * t_g ^ hb ^ _lsb(b) * (t_e ^ a)


def evaluate_garbled(circuit: Circuit, tables: np.ndarray, input_labels: np.ndarray) -> np.ndarray:
    """Evaluate with one active label per input wire, (batch, inputs, 16); returns output labels
    (batch, outputs, 16). NOT gates are free: the garbler swapped the output's label meaning."""
    batch = input_labels.shape[0]
    wires = {w: input_labels[:, w] for w in range(circuit.inputs)}
    table = 0
    for k, (gate, dead) in enumerate(zip(circuit.gates, circuit.last_uses(), strict=True)):
        a = wires[gate.inputs[0]]
        if gate.op == "and":
            wires[gate.output] = _evaluate_and(a, wires[gate.inputs[1]], *tables[table], _tweaks(k, batch))
            table += 1
        else:
            wires[gate.output] = a if gate.op == "not" else a ^ wires[gate.inputs[1]]
        for wire in dead:
            del wires[wire]
    return np.stack([wires[w] for w in circuit.outputs], axis=1)


def decode(output_labels: np.ndarray, decoding: np.ndarray) -> np.ndarray:
    """Output bits: the colour bit of each active output label XOR the garbler's decoding bit."""
    return (output_labels[..., 0] & 1).astype(bool) ^ decoding


# ---------------------------------------------------------------------------------------------------
# Two-party protocol
# ---------------------------------------------------------------------------------------------------


def _garbler_round(ctx: Context, peer: str, ot: OTExtension, circuit: Circuit, x_bits: np.ndarray,
                   tag: str) -> np.ndarray:
    """One chunk as garbler: send tables, own input labels and decoding bits; OT the evaluator's labels."""
    garbling = garble(circuit, len(x_bits))
    g = circuit.garbler_inputs
    ctx.send(peer, f"{tag}/garbled", {
        "tables": garbling.tables,
        "garbler_labels": encode(garbling.zero_labels[:, :g], garbling.offset, x_bits),
        "decoding": garbling.decoding,
    })
    evaluator_zero = np.ascontiguousarray(garbling.zero_labels[:, g:]).reshape(-1, BLOCK)
    ot.send(evaluator_zero, evaluator_zero ^ garbling.offset)
    result = ctx.recv(peer, f"{tag}/result")
    if not isinstance(result, np.ndarray) or result.dtype != np.bool_ or result.shape != (len(x_bits),):
        raise ValueError(f"garbled circuit: the evaluator sent a malformed result; expected ({len(x_bits)},) bool")
    return result


def _checked(message: dict, key: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """message[key] if it is an array of exactly this shape and dtype: the garbler's data is untrusted."""
    value = message.get(key) if isinstance(message, dict) else None
    if not isinstance(value, np.ndarray) or value.dtype != dtype or value.shape != shape:
        raise ValueError(f"garbled circuit: the garbler sent a malformed {key!r}; expected {shape} {np.dtype(dtype)}")
    return value


def _evaluator_round(ctx: Context, peer: str, ot: OTExtension, circuit: Circuit, y_bits: np.ndarray,
                     tag: str) -> np.ndarray:
    """One chunk as evaluator: check the garbler's message, get own labels by OT, evaluate, report back."""
    batch = len(y_bits)
    message = ctx.recv(peer, f"{tag}/garbled")
    tables = _checked(message, "tables", (circuit.and_gates, 2, batch, BLOCK), np.uint8)
    garbler_labels = _checked(message, "garbler_labels", (batch, circuit.garbler_inputs, BLOCK), np.uint8)
    decoding = _checked(message, "decoding", (batch, len(circuit.outputs)), np.bool_)
    own_labels = ot.receive(y_bits.reshape(-1)).reshape(batch, circuit.evaluator_inputs, BLOCK)
    labels = evaluate_garbled(circuit, tables, np.concatenate([garbler_labels, own_labels], axis=1))
    result = decode(labels, decoding)[:, 0]
    ctx.send(peer, f"{tag}/result", result)
    return result


def _agree(ctx: Context, peer: str, tag: str, setup: dict) -> None:
    """Check that both parties run the same comparison on as many values, before any heavy work."""
    ctx.send(peer, f"{tag}/setup", setup)
    theirs = ctx.recv(peer, f"{tag}/setup")
    if theirs != setup:
        raise ValueError(f"garbled circuit: parties disagree on the comparison: {ctx.party} has {setup}, "
                         f"{peer} has {theirs}")


def compare(ctx: Context, peer: str, values: np.ndarray, *, garbler: str, bits: int = 64, signed: bool = True,
            op: str = "gt", ot: OTExtension | None = None, tag: str = "gc") -> np.ndarray:
    """Elementwise x > y (op="gt") or x == y (op="eq") of the garbler's x and the evaluator's y.

    Both parties call it with their own `values` (same length, integers that fit in `bits`, signed or
    not) and the same `garbler`; both get the same bool array and learn nothing else about the other's
    values. Pass an `OTExtension` to reuse its base OTs across calls. Large batches are processed in
    chunks to bound memory.
    """
    if garbler not in (ctx.party, peer):
        raise ValueError(f"garbler must be {ctx.party!r} or {peer!r}, got {garbler!r}")
    if op not in ("gt", "eq"):
        raise ValueError(f"op must be 'gt' or 'eq', got {op!r}")
    own_bits = to_bits(values, bits, signed=signed)
    _agree(ctx, peer, tag, {"count": len(own_bits), "bits": bits, "signed": signed, "op": op, "garbler": garbler})
    circuit = comparison_circuit(bits, signed=signed) if op == "gt" else equality_circuit(bits)
    ot = ot if ot is not None else OTExtension(ctx, peer, tag=f"{tag}/ot")
    party_round = _garbler_round if garbler == ctx.party else _evaluator_round
    results = [party_round(ctx, peer, ot, circuit, own_bits[start : start + _BATCH_CHUNK], tag)
               for start in range(0, len(own_bits), _BATCH_CHUNK)]
    return np.concatenate(results) if results else np.zeros(0, dtype=bool)
