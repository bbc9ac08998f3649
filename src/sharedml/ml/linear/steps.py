"""How many passes a linear model trains when the job leaves `epochs` out: enough optimiser steps on any
table size.

A pass over a small table is one or two mini-batches, so a fixed number of passes is a handful of steps,
too few for any step size that is also safe on large tables: hetero_lr (Adam at 0.05) stopped up to 0.013
AUC short of the optimum after 20 passes over 750 rows and ss_lr (momentum SGD) 0.015 short after 10
passes over 427 rows; with 100 steps both come within 0.003 (docs/robustness.md). Small tables are cheap
to pass over again.
"""

from __future__ import annotations

AUTO_MIN_STEPS = 100


def planned_epochs(epochs: int | None, batch_size: int, rows: int, auto_epochs: int) -> int:
    """`epochs` when given; else `auto_epochs` passes over `rows` rows, more if those make fewer than
    AUTO_MIN_STEPS mini-batch steps of `batch_size` rows. Every party computes the same from the row count."""
    if epochs is not None:
        return epochs
    per_epoch = -(-rows // batch_size)
    return max(auto_epochs, -(-AUTO_MIN_STEPS // per_epoch))
