"""The example data sets shipped inside the package, so that `sharedml demo`, the examples, the tests and
the benchmarks run from an installed wheel in any folder, with nothing downloaded.

Each data set is one gzip-compressed CSV per party (`breast_hetero`: `guest` and `host`;
`default_credit_homo`: `guest`, `host_1`, `host_2` and `test`). They come unchanged from the FATE
project's examples (Apache-2.0); `data/NOTICE.md` names each one's source.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

import pandas as pd

from ..did_you_mean import suggestion

SUFFIX = ".csv.gz"


def folder() -> Path:
    """The folder holding the files (inside the installed package)."""
    return Path(str(resources.files(__package__).joinpath("data")))


@cache
def catalogue() -> dict[str, tuple[str, ...]]:
    """{data set: its parties, in file order}, from the files present."""
    found: dict[str, list[str]] = {}
    for file in sorted(folder().glob(f"*{SUFFIX}")):
        stem = file.name[: -len(SUFFIX)]
        for marker in ("_hetero_", "_homo_"):
            if marker in stem:
                name, party = stem.split(marker, 1)
                found.setdefault(name + marker.rstrip("_"), []).append(party)
    return {name: tuple(parties) for name, parties in found.items()}


def parties(name: str) -> tuple[str, ...]:
    """The parties of data set `name`; a KeyError naming the close matches for an unknown name."""
    if name not in catalogue():
        raise KeyError(f"no example data set {name!r}{suggestion(name, catalogue())} "
                       f"(available: {', '.join(catalogue())})")
    return catalogue()[name]


def path(name: str, party: str) -> Path:
    """The file of `party`'s part of data set `name` (a gzip-compressed CSV that the catalog reads as it is)."""
    if party not in parties(name):
        raise KeyError(f"example data set {name!r} has no party {party!r}; its parties: {', '.join(parties(name))}")
    return folder() / f"{name}_{party}{SUFFIX}"


def load(name: str, party: str | None = None) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """`party`'s table of data set `name`, or every party's ({party: table}) when `party` is None."""
    if party is not None:
        return pd.read_csv(path(name, party))
    return {p: pd.read_csv(path(name, p)) for p in parties(name)}
