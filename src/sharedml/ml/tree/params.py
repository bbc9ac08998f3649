"""Hyperparameters of the boosted trees, each declared once, with its bounds, default and meaning.

Why here: the job component, the federated algorithm and the plaintext reference must mean the same
thing by `max_bin` or `gamma`, so they take the same pydantic model, passed whole, never copied field
by field. The models nest by what a learner needs:

* `Regularization`: what scoring a split needs (`split.py`);
* `TreeParams`: the same plus the boosting loop and the binning; horizontal SecureBoost (`homo.py`)
  adds its own fields to it;
* `BoostParams`: the same plus objective, classes and sampling: what `PlainBoost` takes;
* `SecureBoostParams`: the same plus HE, guest-only rounds and early stopping: the `hetero_secureboost`
  component's parameters, which `secureboost.fit_guest` / `fit_host` take as they are.

A component's parameter names and defaults are the fields' names and defaults here.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ...crypto.he_schemes import HEParams
from ...runtime.component import ColumnList
from ..preprocess.binning import MIN_BIN
from .sampling import Sampling

# Codes of one byte, as XGBoost's default of 256 bins: histograms have max_bin + 1 columns per feature,
# and SecureBoost's encrypted work grows with them.
TREE_MAX_BIN = 255

NEstimators = Annotated[int, Field(ge=1, description="boosting rounds (trees per class)")]
MaxDepth = Annotated[int, Field(ge=1, le=16)]
LearningRate = Annotated[float, Field(gt=0)]
RegLambda = Annotated[float, Field(ge=0, description="L2 penalty on leaf weights (XGBoost's lambda)")]
Gamma = Annotated[float, Field(ge=0, description="least loss reduction a split must bring")]
MinChildWeight = Annotated[float, Field(ge=0, description="least hessian sum in each child")]
MaxBin = Annotated[int, Field(ge=MIN_BIN, le=TREE_MAX_BIN,
                              description="bins per feature (plus one for missing values)")]
Objective = Literal["binary:logistic", "reg:squarederror", "multi:softmax"]
Rate = Annotated[float, Field(gt=0, le=1)]


class Regularization(BaseModel):
    """What scoring a split needs, named and meant as in XGBoost (see `split.py` for the gain)."""

    model_config = ConfigDict(extra="forbid")
    reg_lambda: RegLambda = 1.0
    gamma: Gamma = 0.0
    min_child_weight: MinChildWeight = 1.0


class TreeParams(Regularization):
    """Every boosted-tree learner's loop: how many trees, how deep, how large a step, how many bins."""

    n_estimators: NEstimators = 10
    max_depth: MaxDepth = 5
    learning_rate: LearningRate = 0.3
    max_bin: MaxBin = 32


class BoostParams(TreeParams):
    """`PlainBoost`'s parameters: the loop, the objective and the row and column sampling (`sampling.py`)."""

    objective: Objective = "binary:logistic"
    num_class: int | None = Field(None, ge=2, description="multi:softmax only; default: max label + 1")
    multi_strategy: Literal["one_output_per_tree", "multi_output_tree"] = Field(
        "one_output_per_tree", description="multi:softmax: one tree per class and round, or one tree per round "
        "with a value per class in each leaf (about K times less HE work; up to 4-5 classes per ciphertext)")
    subsample: Rate = Field(1.0, description="share of rows each tree uses (hosts cannot tell which)")
    colsample_bytree: Rate = Field(1.0, description="share of each party's own features per tree")
    goss: bool = Field(False, description="gradient-based one-side sampling instead of uniform `subsample`")
    top_rate: float = Field(0.2, gt=0, lt=1, description="GOSS: share of rows with the largest |g| always kept")
    other_rate: float = Field(0.1, gt=0, lt=1, description="GOSS: share of rows sampled from the rest")
    seed: int | None = Field(None, ge=0, description="sampling seed (default: fresh CSPRNG seeds per party)")

    @model_validator(mode="after")
    def _consistent_sampling(self) -> BoostParams:
        """`Sampling` refuses inconsistent rates (goss with subsample < 1, top_rate + other_rate > 1)."""
        _ = self.sampling
        return self

    @property
    def sampling(self) -> Sampling:
        return Sampling(subsample=self.subsample, colsample_bytree=self.colsample_bytree, goss=self.goss,
                        top_rate=self.top_rate, other_rate=self.other_rate, seed=self.seed)


class SecureBoostParams(BoostParams, HEParams):
    """The `hetero_secureboost` component's parameters, which the protocol (`secureboost.py`) takes too."""

    label: str = Field("y", description="the label column, in the guest's table")
    id_columns: ColumnList = Field(default_factory=lambda: ["id"], description="columns that are not features")
    guest_only_rounds: int = Field(0, ge=0, description="first rounds grown on the guest's features only")
    complete_secure: bool = Field(False, description="FATE's name for guest_only_rounds >= 1")
    early_stopping_rounds: int | None = Field(None, ge=1, description="stop after this many rounds without a "
                                              "better validation score (needs the `validate` input)")
    eval_metric: Literal["auto", "logloss", "mlogloss", "auc", "rmse", "accuracy"] = Field(
        "auto", description="validation metric; auto: logloss, rmse or mlogloss by objective")

    @property
    def guest_only(self) -> int:
        """Rounds grown on the guest's features only, hosts taking no part (`complete_secure`: at least one)."""
        return max(self.guest_only_rounds, 1 if self.complete_secure else 0)
