"""Tables the book shows, also written as CSV under ``<build>/tables/`` for readers to reuse."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from disclatent.data.volume import atomic_path


def table_path(build_dir: str | os.PathLike, name: str) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if not slug:
        raise ValueError(f"table name {name!r} has no usable characters")
    return Path(build_dir) / "tables" / f"{slug}.csv"


def save_table(
    df: pd.DataFrame, name: str, build_dir: str | os.PathLike, index: bool = False
) -> Path:
    """Write ``df`` to ``<build_dir>/tables/<name>.csv`` atomically; returns the path."""
    path = table_path(build_dir, name)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=index, lineterminator="\n")
    return path
