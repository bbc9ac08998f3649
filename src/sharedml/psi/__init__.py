"""Private set intersection: which IDs do the parties share, without showing any other ID.

`intersect(ctx, ids)` is the call for Python code running as one party; the `psi` job component
(`sharedml.psi.components`) wraps the same protocol for tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ..runtime.context import Context
from .ecdh import DEFAULT_BUCKET_SIZE, PsiProtocolError, PsiResult, ecdh_psi
from .ids import Normalisation, PsiInputError, first_duplicates, hash_to_points, id_strings

__all__ = ["PsiInputError", "PsiProtocolError", "PsiResult", "intersect"]


def intersect(ctx: Context, ids: Sequence[str | int | bytes], *, receivers: list[str] | None = None,
              cardinality_only: bool = False, bucket_size: int = DEFAULT_BUCKET_SIZE) -> PsiResult:
    """This party's part of an ECDH-PSI over `ids` (unique; text, integers or bytes).

    Returns the positions into `ids` of the shared IDs, in an order every receiving party shares,
    and the intersection's size (None for what this party is not to learn).
    """
    ids = list(ids)
    text, _ = id_strings(pd.DataFrame({"id": pd.Series(ids, dtype=object)}), ["id"], ctx.party, Normalisation())
    points = hash_to_points(text)
    later, earlier = first_duplicates(points)
    if later.size:
        raise PsiInputError(f"party {ctx.party!r}: ids[{later[0]}] repeats ids[{earlier[0]}]; "
                            f"{later.size} repeated ID(s) in all — pass each ID once")
    return ecdh_psi(ctx, points, reveal_to=receivers, cardinality_only=cardinality_only, bucket_size=bucket_size)
