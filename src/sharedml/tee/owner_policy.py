"""An owner's policy: which enclave code may decrypt a dataset, and who may receive what it produces.

Why: the owner decides before uploading; the tool checks the enclave's quote against this file, and the
dataset's release terms (dataset id, id column, allowed recipients) travel inside the authenticated
envelope header, so the enclave enforces them and nobody can change them in transit.

```yaml
dataset_id: bank-clients          # names the dataset in the key ring and in every envelope
id_column: id                     # the column that rows are joined on
allowed_measurements: [<64 hex>]  # enclave code the owner approved (see `sharedml tee quote`)
allowed_recipients:               # who may receive a trained model: name -> X25519 public key (64 hex)
  risk-team: <64 hex>
allow_simulated: false            # true only for tests: simulated quotes prove nothing
```
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ..jobs.yaml_errors import load_config
from .errors import OwnerPolicyError
from .quotes import TrustSettings


def _hex_bytes(size: int):
    def check(value: str) -> str:
        if not re.fullmatch(rf"[0-9a-fA-F]{{{2 * size}}}", value):
            raise ValueError(f"must be {2 * size} hexadecimal characters ({size} bytes)")
        return value.lower()
    return AfterValidator(check)


Hex32 = Annotated[str, _hex_bytes(32)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]


class OwnerPolicy(BaseModel):
    """A data owner's policy file, validated; see the module docstring for the YAML."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset_id: Name
    id_column: str = Field(min_length=1)
    allowed_measurements: list[Hex32] = Field(min_length=1)
    allowed_recipients: dict[Name, Hex32] = Field(default_factory=dict)
    allow_simulated: bool = False
    simulated_root: Hex32 | None = None
    dcap_verify_command: list[str] = Field(default_factory=list)
    pccs_url: str | None = None

    def trust(self) -> TrustSettings:
        """The attestation settings this policy asks for."""
        return TrustSettings(
            allowed_measurements=frozenset(bytes.fromhex(m) for m in self.allowed_measurements),
            allow_simulated=self.allow_simulated,
            simulated_root=bytes.fromhex(self.simulated_root) if self.simulated_root else None,
            dcap_verify_command=tuple(self.dcap_verify_command), pccs_url=self.pccs_url)

    def terms(self) -> dict[str, object]:
        """What the enclave must enforce, as written into the envelope header."""
        return {"dataset_id": self.dataset_id, "id_column": self.id_column,
                "allowed_recipients": dict(sorted(self.allowed_recipients.items()))}


def load_policy(path: str | Path) -> OwnerPolicy:
    """Read and validate a policy YAML; errors name the file, the line and the field."""
    return load_config(path, OwnerPolicy, OwnerPolicyError, not_a_mapping="a policy is a YAML mapping with "
                       "dataset_id, id_column, allowed_measurements, ...")
