"""Components that misbehave on purpose, for failure-handling tests (loaded via
$SHAREDML_COMPONENT_MODULES so that party processes register them too)."""

from __future__ import annotations

import os
import time
from typing import Literal

from pydantic import BaseModel

from sharedml.runtime.component import component
from sharedml.runtime.context import Context


class FaultyParams(BaseModel):
    culprit: str
    fault: Literal["raise", "exit", "hang", "none"] = "raise"


@component("faulty", params=FaultyParams, outputs=("seen",), min_parties=2)
def faulty(ctx: Context, params: FaultyParams) -> dict[str, object]:
    """Exchange one round, then the culprit fails while the others wait for its second message."""
    ctx.broadcast("hello", ctx.party)
    seen = ctx.gather("hello")
    if ctx.party == params.culprit:
        if params.fault == "raise":
            raise ValueError("deliberate failure in the culprit")
        if params.fault == "exit":
            os._exit(3)  # a crash: no abort notice, no result file
        if params.fault == "hang":
            time.sleep(120)
    else:
        time.sleep(0.05)
    ctx.broadcast("second", ctx.party)
    ctx.gather("second")
    return {"seen": sorted(seen.values())}
