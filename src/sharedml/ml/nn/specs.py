"""The parameters of `homo_nn`: the network's architecture spec, record-level DP-SGD, the task's params.

Why a module of their own: both sides of homo_nn use them, the component (`homo.py`, no torch) and the
PyTorch side (`models.py`, imported only when a task runs). Kept here, neither imports the other for them,
and reading the params needs no torch.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ...fl.rounds import FederationParams
from ...runtime.component import CodeRef, ColumnList


class MLPSpec(BaseModel):
    """Linear layers of `hidden` widths, each followed by the activation (and dropout), then a linear head."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["mlp"] = "mlp"
    hidden: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [32, 16])
    activation: Literal["relu", "tanh", "sigmoid", "gelu"] = "relu"
    dropout: float = Field(0.0, ge=0, lt=1)


class CNNSpec(BaseModel):
    """Each row is a channels x height x width image (channel-major); 2 conv + max-pool blocks and a linear head."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["cnn"]
    channels: int = Field(ge=1)
    height: int = Field(ge=4, description="at least 4: two 2x2 poolings")
    width: int = Field(ge=4)
    filters: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]] = (8, 16)


class FactorySpec(BaseModel):
    """A user's network: `factory(inputs, outputs)` returns a torch.nn.Module; every node must have that code
    and must have allowed it (a node's policy `code`, `sharedml run --allow-code`)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["factory"]
    factory: CodeRef = Field(description="'package.module:function', installed and allowed at every node of the job")


ModelSpec = Annotated[MLPSpec | CNNSpec | FactorySpec, Field(discriminator="type")]


class DPSGDParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    noise_multiplier: float = Field(gt=0, description="sigma / max_grad_norm of the noise on each batch's gradient")
    max_grad_norm: float = Field(gt=0, description="L2 bound on each row's gradient")
    delta: float = Field(1e-5, gt=0, lt=1, description="delta at which each client's epsilon is reported")


class HomoNNParams(FederationParams):
    label: str = Field("y", description="the label column, at every client")
    id_columns: ColumnList = Field(default_factory=lambda: ["id"], description="columns that are not features")
    task: Literal["binary", "multiclass", "regression"] = "binary"
    classes: int | None = Field(None, ge=2, description="multiclass only: the labels are 0 .. classes - 1")
    model: ModelSpec = Field(default_factory=MLPSpec, description="{type: mlp | cnn | factory, ...}")
    local_epochs: int = Field(1, ge=1)
    batch_size: int = Field(32, ge=1)
    optimizer: Literal["sgd", "adam"] = "adam"
    learning_rate: float = Field(0.01, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd only")
    weight_decay: float = Field(0.0, ge=0)
    dp_sgd: DPSGDParams | None = Field(None, description="record-level DP-SGD at each client (opacus)")
    standardize: bool = Field(
        True, description="scale the features by the mean and standard deviation of all clients' rows, from secure "
        "sums (every party learns those global figures only; docs/security.md); the model keeps the scaler for "
        "prediction. Without it tiny-scale or heavy-tailed features left the default MLP at AUC 0.50 "
        "(docs/robustness.md)")

    @model_validator(mode="after")
    def _consistent(self) -> HomoNNParams:
        if (self.task == "multiclass") != (self.classes is not None):
            raise ValueError("task multiclass needs `classes` (labels 0 .. classes - 1), and only it takes `classes`")
        if self.dp_sgd is not None and self.proximal_mu > 0:
            raise ValueError("dp_sgd does not take fedprox's proximal term (its gradient escapes clipping); "
                             "use another strategy or leave dp_sgd out")
        return self

    @property
    def outputs(self) -> int:
        return self.classes if self.classes is not None else 1
