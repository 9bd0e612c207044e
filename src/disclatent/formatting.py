"""Text formatting shared by tables and pages: one natural sort, one interval format."""

from __future__ import annotations

import math
import re


def natural_key(text: str) -> tuple:
    """Sort key that orders embedded numbers by value: ``"2_t1"`` before ``"10_t1"``."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(text)))


def _missing(value) -> bool:
    try:
        return value is None or not math.isfinite(float(value))
    except (TypeError, ValueError):
        return True


def format_ci(est, lo=None, hi=None, digits: int = 2, missing: str = "n/a") -> str:
    """``"0.61 (0.55-0.67)"``; ``missing`` when there is no estimate, the estimate alone
    when its interval cannot be computed."""
    if _missing(est):
        return missing
    if _missing(lo) or _missing(hi):
        return f"{float(est):.{digits}f}"
    return f"{float(est):.{digits}f} ({float(lo):.{digits}f}-{float(hi):.{digits}f})"


def format_number(value, digits: int = 2, missing: str = "n/a") -> str:
    """A number with ``digits`` decimals; strings and integers as they are."""
    if value is None:
        return missing
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"
