"""Parameters of the vertical GLM components, which the training loop (`hetero_train.py`) takes as they are.

Why a module of its own: the components (`hetero.py`) and the training loop both take these models, and the
training loop must not import the components. Each setting is declared once, here.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from ...crypto.he_schemes import HEParams
from ...runtime.component import ColumnList
from .hetero_protocol import Objective
from .steps import AUTO_MIN_STEPS

AUTO_EPOCHS = 20  # epochs: None trains this many passes, or more for steps.AUTO_MIN_STEPS mini-batch steps

Epochs = Annotated[int, Field(ge=1)]
Optimizer = Literal["sgd", "adam", "preconditioned"]
LearningRate = Annotated[float, Field(gt=0)]
Schedule = Literal["constant", "inverse_sqrt"]


class HeteroGLMParams(HEParams):
    """`hetero_linr`'s parameters, and the base of the other vertical GLMs'."""

    model_config = ConfigDict(extra="forbid")
    label: str = Field("y", description="the label column, in the guest's table")
    id_columns: ColumnList = Field(default_factory=lambda: ["id"], description="columns that are not features")
    epochs: Epochs = Field(10, description="passes over the training rows")
    batch_size: int = Field(1024, ge=1, description="rows per mini-batch (the same rows at every party)")
    optimizer: Optimizer = Field(
        "sgd", description="adam: per-coordinate steps; preconditioned: each party scales its gradient by the "
        "inverse of its own columns' Gram matrix (a block-diagonal Newton step; far fewer epochs on correlated "
        "features); every party updates only its own weights, from its own gradient")
    learning_rate: LearningRate = 0.15
    learning_rate_schedule: Schedule = Field("constant", description="inverse_sqrt: learning_rate / sqrt(1 + epoch)")
    penalty: Literal["none", "l2", "l1"] = Field("l2", description="l1 is applied as a soft-threshold step")
    alpha: float = Field(1e-4, ge=0, description="regularisation on the mean loss (sklearn C = 1 / (alpha · n))")
    fit_intercept: bool = True
    standardize: bool = Field(True, description="each party scales its own columns to mean 0, variance 1")
    tol: float = Field(0.0, ge=0, description="stop once all weights together move less than this in an epoch "
                       "(hosts then report ‖Δw‖² per epoch); 0: off")
    early_stopping_rounds: int | None = Field(None, ge=1, description="stop after this many epochs without a "
                                              "better validation score (needs the `validate` input)")
    seed: int | None = Field(None, ge=0, description="batch shuffling seed (default: from the CSPRNG)")

    @model_validator(mode="after")
    def _consistent(self) -> HeteroGLMParams:
        if self.penalty == "l1" and self.optimizer != "sgd":
            raise ValueError("penalty l1 (a soft-threshold step) needs optimizer sgd")
        return self

    def objective(self, name: str) -> Objective:
        """The residual form of model family `name` (logistic, linear or poisson) under these parameters."""
        return Objective(name, getattr(self, "taylor_point", "zero"), getattr(self, "exact_epochs", 0))


class HeteroLRParams(HeteroGLMParams):
    """`hetero_lr`'s parameters: the GLM's, with logistic regression's own defaults and Taylor point."""

    # Defaults measured on the robustness suite (benchmarks/robustness.py, docs/robustness.md) and on
    # default_credit: Adam at 0.05 (inverse_sqrt) for 20 epochs stays within 0.0035 AUC of sklearn on every
    # family, three seeds, 10^4-10^5 rows. The former default, preconditioned at 0.2 for 10 epochs, assumes the
    # logistic curvature of balanced classes (1/4): with 3 % positives the true one is ~0.03, its steps are 8x
    # too short, and it stopped 0.017 AUC below sklearn. Twice the epochs of before: twice the training time.
    epochs: Epochs | None = Field(
        None, description=f"passes over the training rows; default: {AUTO_EPOCHS} (Adam's decaying steps then "
        "settle within 0.0035 AUC of the optimum on every robustness family; 10 left up to 0.006), more on a small "
        f"table so that training takes at least {AUTO_MIN_STEPS} mini-batch steps (20 passes over 750 rows are 20 "
        "steps, up to 0.013 AUC short)")
    optimizer: Optimizer = Field(
        "adam", description="see hetero_linr; adam by default for logistic regression: its per-coordinate steps "
        "do not depend on the loss's curvature, which class imbalance shrinks (preconditioned assumes balanced "
        "classes and fell 0.017 AUC short on 3 % positives)")
    learning_rate: LearningRate = Field(0.05, description="adam: the largest step of a standardised weight")
    learning_rate_schedule: Schedule = Field("inverse_sqrt",
                                             description="inverse_sqrt: learning_rate / sqrt(1 + epoch)")
    taylor_point: Literal["zero", "guest", "exact"] = Field(
        "guest", description="where the sigmoid is linearised: zero (FATE: d = z/4 + 1/2 - y) or each row's guest "
        "partial score (closer to exact logistic regression when the guest's features carry much of the signal; "
        "one more encrypted vector per batch, same disclosure); exact: not at all, the guest and the first host "
        "compute d = sigmoid(z) - y on secret shares of z with the MPC engine (dealer-free, error 3.5e-4) and the "
        "gradients use those shares under HE (same disclosure; within 0.0011 AUC of sklearn on 3 % positives where "
        "guest fell 0.0034 short, but each epoch's MPC tuples are made by oblivious transfer: about 2x the CPU "
        "and 70x the bytes of guest per epoch, 1.7 GB on 30,000 rows)")
    exact_epochs: int = Field(
        2, ge=0, description="with taylor_point zero or guest, the last this many passes use the exact residual "
        "(as taylor_point exact does): where the linearised sigmoid biases the weights, on imbalanced classes with "
        "much of the signal at the hosts, these passes at the smallest step sizes pull them to the exact optimum "
        "(worst gap to sklearn over 18 imbalanced runs of the training loop: 0.0059 with none, 0.0035 with 2, "
        "0.0011 with 4), for 2 of 20 passes at the exact residual's cost; 0: none")


class HeteroPoissonParams(HeteroGLMParams):
    """`hetero_poisson`'s parameters: the GLM's and an exposure column."""

    exposure: str | None = Field(None, description="guest column with each row's exposure (default: 1)")
