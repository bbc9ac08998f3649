"""Online joint prediction for vertical models: a service per party, replicas, versions, a client SDK.

A request reaches the guest (`POST /v1/predict`); the guest reads its own features by id, asks every host
of the model once, concurrently (`fanout`), for its partial result on those ids — routing bits of its tree
nodes (SecureBoost) or its partial scores (hetero LR) — and combines them with the batch prediction code
itself (`parts`), so online and batch predictions are equal. Modules, in the order a request flows:
`client` (SDK) -> `guest` (HTTP) -> `predictor` (batching, fallback) -> `versions` (gray release) ->
`fanout` + `replicas` (balancing, failover) + `net.https_pool` -> `wire` -> `host` -> `features`
(sources) and `parts` (with `fastpath`, vectorised SecureBoost loops); `hot_routes` and `model_admin`
are what the guest's and the host's apps share. The replica registry is `net.replica_registry` with
serving's `registration` (member type, heartbeat loop); `config`, `service` and `cli` start a replica.
What each party learns: docs/serving.md.
"""

from typing import Any

from .errors import BadRequest, HostUnavailable, ServingError, UnknownIds, UnknownModel

__all__ = ["BadRequest", "Client", "HostUnavailable", "ServingError", "UnknownIds", "UnknownModel"]


def __getattr__(name: str) -> Any:
    """`Client` is loaded on first use: `sharedml`'s CLI imports this package, and the HTTP stack is slow."""
    if name == "Client":
        from .client import Client

        return Client
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
