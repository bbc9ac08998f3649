"""Errors of the TEE route, one class per thing that can go wrong, so callers and the CLI can tell them apart."""

from __future__ import annotations

from ..net.replicas import ReplicaUnavailable, RequestRefused


class TeeError(Exception):
    """Base class of every error raised by `sharedml.tee`."""


class AttestationError(TeeError):
    """A quote could not be produced, or does not verify against the verifier's trust settings."""


class OwnerPolicyError(TeeError):
    """An owner policy file is missing, malformed, or forbids what was asked."""


class EnvelopeError(TeeError):
    """An encrypted file, key envelope or message is malformed, tampered with, truncated or for someone else."""


class EnclaveNotReady(TeeError):
    """The enclave was asked to work before it generated its key and obtained its quote."""


class ReleaseError(TeeError):
    """A model may not be released to the requested recipients under every owner's policy."""


class StorageError(TeeError):
    """A storage location cannot be read or written (missing file, missing fsspec for a URL)."""


class ClusterError(TeeError, ReplicaUnavailable):
    """No healthy replica could serve a request, or a replica is unknown to the cluster manager."""


class TrainingError(TeeError):
    """Training inside the enclave cannot start: bad columns, labels or parameters."""


class RequestRejected(TeeError, RequestRefused):
    """A prediction request is refused for what it is (sender not allowed, altered, malformed), not because
    the replica failed: retrying it elsewhere would not help, so the cluster does not fail over."""
