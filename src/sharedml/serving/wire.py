"""The guest <-> host message: the safe msgpack format of `sharedml.net.serialization`, never pickle.

Request  {"model": name, "version": int, "ids": [id, ...]}
Answer   {"unknown": [positions]} plus the model part's answer: {"rows", "keys", "bits"} (SecureBoost
         routing bits) or {"scores"} (hetero LR partial scores, shape (n, K))

On the wire the routing bits' node keys ("tree:node") are one newline-joined text: as a list of hundreds
of short strings they cost the guest more to decode and check than the prediction itself.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ..net.serialization import SerializationError, dumps_bytes, loads
from .errors import BadRequest

CONTENT_TYPE = "application/x-sharedml"
MAX_IDS = 100_000


def encode(message: dict[str, Any]) -> bytes:
    return dumps_bytes(message)


def encode_answer(answer: dict[str, Any]) -> bytes:
    if "keys" in answer:
        answer = {**answer, "keys": "\n".join(answer["keys"])}
    return dumps_bytes(answer)


@functools.lru_cache(maxsize=256)
def _split_keys(text: str) -> tuple[str, ...]:
    """The node keys of a joined text; a host sends the same text with every answer, so it is split once."""
    return tuple(text.split("\n")) if text else ()


def decode_request(body: bytes, guest: str) -> tuple[str, int, list[int | str]]:
    """(model, version, ids) from a guest's request, or BadRequest naming the field."""
    try:
        message = loads(body, max_depth=4)
    except SerializationError as exc:
        raise BadRequest(f"request from {guest!r} is not a sharedml message: {exc}") from None
    if not isinstance(message, dict):
        raise BadRequest("request must be a mapping with model, version and ids")
    name, version, ids = message.get("model"), message.get("version"), message.get("ids")
    if not isinstance(name, str) or not isinstance(version, int) or isinstance(version, bool):
        raise BadRequest("request needs `model` (text) and `version` (integer)")
    if not isinstance(ids, list) or len(ids) > MAX_IDS or not all(
            isinstance(i, int | str) and not isinstance(i, bool) for i in ids):
        raise BadRequest(f"request `ids` must be a list of at most {MAX_IDS} integers or strings")
    return name, version, ids


def decode_answer(body: bytes, host: str, rows: int) -> dict[str, Any]:
    """A host's answer, checked for the fields and shapes the guest's model part reads."""
    try:
        answer = loads(body, max_depth=4)
    except SerializationError as exc:
        raise ValueError(f"host {host!r} answered with a malformed message: {exc}") from None
    if not isinstance(answer, dict) or not isinstance(answer.get("unknown"), list):
        raise ValueError(f"host {host!r} answered without `unknown`")
    if "scores" in answer:
        scores = answer["scores"]
        if not isinstance(scores, np.ndarray) or scores.ndim != 2 or len(scores) != rows:
            raise ValueError(f"host {host!r} sent partial scores of the wrong shape for {rows} rows")
        return answer
    if isinstance(answer.get("keys"), str):
        answer["keys"] = _split_keys(answer["keys"])
    if not (isinstance(answer.get("bits"), np.ndarray) and isinstance(answer.get("keys"), tuple)
            and answer.get("rows") == rows and answer["bits"].dtype == np.uint8
            and answer["bits"].shape == (len(answer["keys"]), (rows + 7) // 8)):
        raise ValueError(f"host {host!r} sent routing bits of the wrong shape for {rows} rows")
    return answer
