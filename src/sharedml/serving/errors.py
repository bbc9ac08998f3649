"""Errors of online serving, one class per answer a caller must tell apart (each maps to an HTTP status)."""

from __future__ import annotations

from ..jobs.yaml_errors import ConfigError


class ServingError(Exception):
    """Base class of every error raised by `sharedml.serving`; `status` is the HTTP status it answers with."""

    status = 500


class ServeConfigError(ServingError, ConfigError):
    """A serve.yaml (or a model part or feature source it names) that cannot be loaded; names file and field.
    Over HTTP (loading a version live) it is the request's fault: 400."""

    status = 400


class BadRequest(ServingError, ValueError):
    """A malformed prediction request: the message names the field and what is expected."""

    status = 400


class UnknownIds(ServingError, KeyError):
    """Sample ids that a party's feature source does not hold (404)."""

    status = 404

    def __init__(self, party: str, ids: list[object]) -> None:
        self.party, self.ids = party, list(ids)
        shown = ", ".join(repr(i) for i in self.ids[:10]) + (f" and {len(self.ids) - 10} more" if len(self.ids) > 10
                                                             else "")
        super().__init__(f"unknown sample id(s) at party {party!r}: {shown}; that party's feature source has no "
                         "row for them")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class UnknownModel(ServingError, LookupError):
    """A model name or version that this replica has not loaded (404)."""

    status = 404


class HostUnavailable(ServingError, RuntimeError):
    """No replica of a host party answered within the timeout (503), and no fallback model is configured."""

    status = 503


class Forbidden(ServingError, PermissionError):
    """A caller whose certificate name may not use this route (403)."""

    status = 403
