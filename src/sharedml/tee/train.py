"""Training inside the enclave: decrypt several owners' tables chunk by chunk, join, fit, release.

Why: this is the computation owners approved by measurement. The model leaves the enclave only as
envelopes to recipients that every owner's policy allows (checked before fitting), and as a sealed copy
in storage, encrypted under a key that stays in the key ring, for the prediction replicas.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .enclave import Enclave
from .errors import TrainingError
from .models import ALGORITHMS, TrainedModel, fit, model_name
from .release import allowed_recipients, release_context, release_file
from .tables import KEY, join, read_csv_chunks

MODEL_ID_SIZE = 16


@dataclass(frozen=True)
class TrainJob:
    """What to train: encrypted inputs, the label (`<dataset id>.<column>`), algorithm, parameters, recipients."""

    datasets: list[str]
    label: str
    recipients: list[str]
    algorithm: str = "xgboost"
    params: dict[str, Any] = field(default_factory=dict)
    model_location: str | None = None  # where to seal the model for prediction replicas


@dataclass(frozen=True)
class TrainResult:
    """Release files per recipient, and what a prediction client needs to know."""

    model_id: bytes
    releases: dict[str, bytes]
    features: list[str]
    rows: int


def load_joined(enclave: Enclave, locations: list[str]) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Decrypt and parse each encrypted CSV, join them; returns the joined table and each owner's terms."""
    tables, terms = [], []
    for location in locations:
        with enclave.open_sealed(location) as (entry, chunks):
            tables.append(read_csv_chunks(chunks, entry.dataset_id, entry.terms["id_column"]))
            terms.append(entry.terms)
    return join(tables), terms


def features_and_label(joined: pd.DataFrame, label: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The feature matrix (every joined column except the key and the label) and the label vector."""
    if label not in joined.columns:
        raise TrainingError(f"label {label!r} not found; name it as '<dataset id>.<column>', one of: "
                            f"{', '.join(c for c in joined.columns if c != KEY)}")
    features = [c for c in joined.columns if c not in (KEY, label)]
    bad = [c for c in features if not np.issubdtype(joined[c].dtype, np.number)]
    if bad:
        raise TrainingError(f"non-numeric feature columns: {', '.join(bad)}; encode them before encrypting")
    return joined[features].to_numpy(dtype=np.float64), joined[label].to_numpy(), features


def train(enclave: Enclave, job: TrainJob) -> TrainResult:
    """Run `job` inside `enclave`; refuses before fitting if any recipient is not allowed by every owner."""
    if job.algorithm not in ALGORITHMS:
        raise TrainingError(f"unknown algorithm {job.algorithm!r}; choose one of {', '.join(ALGORITHMS)}")
    joined, terms = load_joined(enclave, job.datasets)
    recipients = allowed_recipients(terms, job.recipients)
    X, y, features = features_and_label(joined, job.label)
    del joined  # the feature matrix is all that training needs: free the table first
    model = fit(job.algorithm, X, y, features, job.label, job.params)
    model_id = os.urandom(MODEL_ID_SIZE)
    dataset_ids = [t["dataset_id"] for t in terms]
    if job.model_location is not None:
        enclave.seal(model.to_bytes(), job.model_location, model_terms(model_id, recipients))
    releases = {name: _release(enclave, model, name, key, model_id, dataset_ids) for name, key in recipients.items()}
    return TrainResult(model_id, releases, features, len(y))


def model_terms(model_id: bytes, recipients: dict[str, bytes]) -> dict[str, Any]:
    """Terms of the sealed model: only these recipients may query it."""
    return {"dataset_id": model_name(model_id), "id_column": KEY,
            "allowed_recipients": {name: key.hex() for name, key in sorted(recipients.items())}}


def _release(enclave: Enclave, model: TrainedModel, name: str, key: bytes, model_id: bytes,
             datasets: list[str]) -> bytes:
    context = release_context(enclave.measurement, name, key, model_id, datasets)
    return release_file(enclave.quote, name, model_id, datasets, enclave.seal_to(key, model.to_bytes(), context))
