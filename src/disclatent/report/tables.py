"""Tables the book shows, also written as CSV under ``<build>/tables/`` for readers to reuse."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from disclatent.data.volume import write_csv_atomic
from disclatent.paths import BuildPaths


def save_table(
    df: pd.DataFrame, name: str, build_dir: str | os.PathLike, index: bool = False
) -> Path:
    """Write ``df`` to ``<build_dir>/tables/<name>.csv`` atomically; returns the path."""
    return write_csv_atomic(df, BuildPaths(Path(build_dir)).table(name), index=index)
