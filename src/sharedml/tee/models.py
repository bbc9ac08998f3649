"""Models trained in the enclave, and their serialization, which never unpickles anything.

Why: a model leaves the enclave to recipients and comes back into replicas from storage, so its format
must be safe to load from untrusted bytes. xgboost models are stored in xgboost's own UBJSON format;
scikit-learn has no safe format of its own (its models are pickles, and skops is not a dependency), so
logistic regression and the MLP are stored as their fitted arrays in sharedml's msgpack format
(`sharedml.net.serialization`: plain types and numeric arrays only) and predicted with a few lines of
numpy that reproduce `predict_proba` exactly.

Container (msgpack map): format "sharedml-tee-model-v1", algorithm, features, label, classes, and
  xgboost: booster (UBJSON bytes)
  logistic_regression: coef (K' x d), intercept (K')
  mlp: coefs, intercepts (one array per layer), activation, out_activation
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..net.serialization import SerializationError, dumps_bytes, loads
from .errors import EnvelopeError, TrainingError

FORMAT = "sharedml-tee-model-v1"
ALGORITHMS = ("xgboost", "logistic_regression", "mlp")


def _expit(z: np.ndarray) -> np.ndarray:
    from scipy.special import expit  # here, not at the top: `sharedml`'s CLI imports this module, scipy is slow

    return expit(z)


def _softmax(z: np.ndarray) -> np.ndarray:
    from scipy.special import softmax

    return softmax(z, axis=1)


_ACTIVATIONS = {"identity": lambda z: z, "logistic": _expit, "tanh": np.tanh, "relu": lambda z: np.maximum(z, 0)}


def model_name(model_id: bytes) -> str:
    """How a model is named in the key ring and in prediction requests."""
    return f"model-{model_id.hex()}"


@dataclass(frozen=True)
class TrainedModel:
    """A fitted model as plain data: `fields` is the container above."""

    fields: dict[str, Any]

    @property
    def algorithm(self) -> str:
        return self.fields["algorithm"]

    @property
    def features(self) -> list[str]:
        return list(self.fields["features"])

    def to_bytes(self) -> bytes:
        return dumps_bytes(self.fields)

    @classmethod
    def from_bytes(cls, raw: bytes) -> TrainedModel:
        try:
            fields = loads(raw)
        except SerializationError as exc:
            raise EnvelopeError(f"malformed model container: {exc}") from None
        if not isinstance(fields, dict) or fields.get("format") != FORMAT or fields.get("algorithm") not in ALGORITHMS:
            raise EnvelopeError(f"not a {FORMAT} model container")
        return cls(fields)

    def booster(self):
        """The xgboost Booster (xgboost models only)."""
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(bytearray(self.fields["booster"]))
        return booster

    def native_bytes(self) -> bytes:
        """The model in its library's own format where one is safe: UBJSON for xgboost, else the container."""
        return bytes(self.fields["booster"]) if self.algorithm == "xgboost" else self.to_bytes()

    def predict_scores(self, X: np.ndarray) -> np.ndarray:
        """Probability of the positive class (binary), or (n, K) class probabilities."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.features):
            raise ValueError(f"expected a 2-D array with {len(self.features)} feature columns, got shape {X.shape}")
        if self.algorithm == "xgboost":
            import xgboost as xgb

            return self.booster().predict(xgb.DMatrix(X, feature_names=self.features))
        if self.algorithm == "logistic_regression":
            z = X @ self.fields["coef"].T + self.fields["intercept"]
            return _expit(z[:, 0]) if z.shape[1] == 1 else _softmax(z)
        activation = X
        hidden = _ACTIVATIONS[self.fields["activation"]]
        layers = list(zip(self.fields["coefs"], self.fields["intercepts"], strict=True))
        for i, (weights, bias) in enumerate(layers):
            activation = activation @ weights + bias
            if i < len(layers) - 1:
                activation = hidden(activation)
        if self.fields["out_activation"] == "softmax":
            return _softmax(activation)
        return _expit(activation[:, 0])


def fit(algorithm: str, X: np.ndarray, y: np.ndarray, features: list[str], label: str,
        params: dict[str, Any]) -> TrainedModel:
    """Train `algorithm` on (X, y) with `params` (the library's own parameter names)."""
    base = {"format": FORMAT, "algorithm": algorithm, "features": list(features), "label": label,
            "classes": np.unique(y)}
    try:
        if algorithm == "xgboost":
            return TrainedModel({**base, "booster": _fit_xgboost(X, y, features, params)})
        if algorithm == "logistic_regression":
            from sklearn.linear_model import LogisticRegression

            lr = LogisticRegression(**params).fit(X, y)
            return TrainedModel({**base, "coef": lr.coef_, "intercept": lr.intercept_})
        if algorithm == "mlp":
            from sklearn.neural_network import MLPClassifier

            mlp = MLPClassifier(**params).fit(X, y)
            return TrainedModel({**base, "coefs": list(mlp.coefs_), "intercepts": list(mlp.intercepts_),
                                 "activation": mlp.activation, "out_activation": mlp.out_activation_})
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"{algorithm}: {exc}") from None
    raise TrainingError(f"unknown algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")


def xgboost_params(params: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """xgboost's native parameters (hist trees, binary logistic unless given) and the number of rounds."""
    native = {"objective": "binary:logistic", "tree_method": "hist", **params}
    return native, int(native.pop("n_estimators", 10))


def _fit_xgboost(X: np.ndarray, y: np.ndarray, features: list[str], params: dict[str, Any]) -> bytes:
    import xgboost as xgb

    native, rounds = xgboost_params(params)
    booster = xgb.train(native, xgb.DMatrix(X, label=y, feature_names=features), num_boost_round=rounds)
    return bytes(booster.save_raw("ubj"))
