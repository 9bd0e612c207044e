"""Disc label numbering checked against anatomy, from the header's geometry.

SPIDER numbers discs upward: ``200 + k`` with ``k = 1`` at L5/S1, and vertebra ``k`` (1 = L5)
directly above disc ``200 + k``. Some SPIDER-format masks (seen in T2-SPACE masks of a public
copy) count from the other end: discs 218-224 with 224 at L5/S1, vertebrae 18-24 with 24 = L5,
while the gradings still use IVD labels 1-7 counted from L5/S1. Read naively, 224 would be
"C1/C2" and joined to the wrong grading.

:func:`check_numbering` compares the label order with the discs' superior coordinate (LPS
``z`` of their centres of mass, from the header's direction cosines, never array position):

* IVD labels rising from inferior to superior: accepted; when vertebra labels are present
  they must agree (vertebra ``k`` the nearest one above disc ``200 + k``). If every disc is
  off by the same number ``d`` from the vertebrae above it, the numbering is a clean offset
  that the vertebrae confirm (they rise upward too): the discs are renumbered after the
  vertebrae.
* labels falling from inferior to superior (the whole series numbered downward): a clean
  reversal when the vertebra labels fall upward too and the vertebra nearest above disc
  ``200 + j`` is ``j``, as in the masks described above; then disc ``200 + j`` is IVD label
  ``25 - j`` (224 -> 1 = L5/S1, 218 -> 7 = T11/T12).
* anything else (labels out of order, a reversal the vertebrae do not confirm, vertebrae that
  contradict the discs): :class:`NumberingError` naming the file and the two discs that
  break the rule; the series is left out, never silently mislabelled.

A renumbered series carries a note naming it and the new reading, which
:func:`disclatent.discs.isolation.find_discs` reports as a ``RenumberedWarning``.

With explicit ``labels`` (a user's own label values) only the rising order is checked: the
caller's mapping is never rewritten, and vertebra values are not assumed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from disclatent.data import labels as lab
from disclatent.data.volume import DataError, Volume

# SPIDER's downward numbering mirrors the upward one: value 200 + j <-> IVD label 25 - j
REVERSED_ANCHOR = lab.MAX_INDEX


class NumberingError(DataError):
    """A mask's disc labels contradict the anatomy and cannot be mapped with confidence."""


@dataclass(frozen=True)
class Numbering:
    """``{mask value: IVD label}`` after the check, and what was renumbered and why
    (``None`` when the labels follow the convention as they are)."""

    mapping: dict[int, int]
    note: str | None = None


def superior_mm(mask: Volume, ijk: np.ndarray) -> float:
    """Mean LPS ``z`` (mm, towards superior) of index coordinates ``(n, 3)`` of ``mask``."""
    m = mask.direction * np.asarray(mask.spacing)[None, :]
    centre = np.asarray(ijk, float).mean(axis=0)
    return float((m @ centre + np.asarray(mask.origin))[2])


def vertebra_heights(mask: Volume) -> dict[int, float]:
    """``{vertebra index: superior coordinate (mm)}`` of the vertebra labels of ``mask``
    (1..25 and the partial ones 101..125, merged by index)."""
    arr = mask.array
    whole = (arr >= 1) & (arr <= lab.MAX_INDEX)
    part = (arr > lab.PARTIAL_VERTEBRA_OFFSET) & (
        arr <= lab.PARTIAL_VERTEBRA_OFFSET + lab.MAX_INDEX
    )
    kk, jj, ii = np.nonzero(whole | part)
    if not len(kk):
        return {}
    index = arr[kk, jj, ii].astype(np.int64)
    index = np.where(
        index > lab.PARTIAL_VERTEBRA_OFFSET, index - lab.PARTIAL_VERTEBRA_OFFSET, index
    )
    m = mask.direction * np.asarray(mask.spacing)[None, :]
    z = np.stack([ii, jj, kk], axis=1).astype(float) @ m[2] + float(mask.origin[2])
    n = np.bincount(index, minlength=lab.MAX_INDEX + 1)
    s = np.bincount(index, weights=z, minlength=lab.MAX_INDEX + 1)
    return {int(v): float(s[v] / n[v]) for v in np.nonzero(n)[0]}


def _vertebra_above(z_disc: float, vertebrae: Mapping[int, float]) -> int | None:
    above = [(z, v) for v, z in vertebrae.items() if z > z_disc]
    return min(above)[1] if above else None


def _describe(values: list[int]) -> str:
    return f"{min(values)}-{max(values)}" if len(values) > 1 else str(values[0])


def check_numbering(
    mask: Volume,
    heights: Mapping[int, float],
    mapping: Mapping[int, int],
    spider_labels: bool = True,
) -> Numbering:
    """``{mask value: IVD label}`` checked against anatomy (see the module docstring).

    ``heights``: superior coordinate (mm) of each disc value present; ``mapping``: the IVD
    label each value would have by convention; ``spider_labels``: the values follow SPIDER's
    convention (vertebra labels may then confirm a reversal or an offset). Raises
    :class:`NumberingError` when the labels cannot be trusted.
    """
    values = sorted(heights, key=lambda v: mapping[v])
    out = {v: mapping[v] for v in values}
    z = np.array([heights[v] for v in values])
    rising = bool(np.all(np.diff(z) > 0)) if len(values) > 1 else True
    falling = bool(np.all(np.diff(z) < 0)) and len(values) > 1
    if not spider_labels:
        if rising:
            return Numbering(out)
        raise NumberingError(_out_of_order(mask, values, z, out))
    vertebrae = vertebra_heights(mask)
    if rising:
        above = {v: _vertebra_above(heights[v], vertebrae) for v in values}
        offsets = {out[v] - a for v, a in above.items() if a is not None}
        if not vertebrae or offsets <= {0}:
            return Numbering(out)
        ladder = sorted(vertebrae, key=lambda v: vertebrae[v])
        if len(offsets) == 1 and ladder == sorted(vertebrae):
            (d,) = offsets
            new = {v: k - d for v, k in out.items()}
            if all(1 <= k <= lab.MAX_INDEX for k in new.values()):
                why = (
                    f"disc labels {_describe(values)} are offset by {d} from the vertebra "
                    f"labels above them (vertebra {above[values[0]]} sits on disc {values[0]})"
                )
                return Numbering(new, _note(mask, why, new))
        raise NumberingError(
            f"{mask.where}: disc and vertebra labels disagree: the vertebra nearest above "
            + ", ".join(f"disc {v} is {above[v]}" for v in values)
            + " (SPIDER: vertebra k sits on disc 200 + k); left out"
        )
    if falling:
        j = {v: v - lab.DISC_LABEL_OFFSET for v in values}
        ladder = sorted(vertebrae, key=lambda v: vertebrae[v])
        vert_falling = len(ladder) > 1 and ladder == sorted(vertebrae, reverse=True)
        above = {v: _vertebra_above(heights[v], vertebrae) for v in values}
        confirmed = (
            vert_falling
            and all(a is None or a == j[v] for v, a in above.items())
            and any(a is not None for a in above.values())
            and all(1 <= REVERSED_ANCHOR - j[v] for v in values)
        )
        if confirmed:
            new = {v: REVERSED_ANCHOR - j[v] for v in values}
            why = (
                f"disc labels {_describe(values)} are numbered downward ({max(values)} is "
                f"the most inferior disc) and the vertebra labels "
                f"{_describe(sorted(vertebrae))} confirm it"
            )
            return Numbering(new, _note(mask, why, new))
        raise NumberingError(
            f"{mask.where}: disc labels {_describe(values)} fall from inferior to superior "
            f"({max(values)} is the most inferior disc) but the vertebra labels "
            + (
                f"{_describe(sorted(vertebrae))} do not confirm a clean reversal"
                if vertebrae
                else "are absent, so a reversal cannot be confirmed"
            )
            + "; SPIDER numbers discs upward from 201 = L5/S1; left out"
        )
    raise NumberingError(_out_of_order(mask, values, z, out))


def _out_of_order(mask: Volume, values: list[int], z: np.ndarray, ivd: Mapping[int, int]) -> str:
    i = int(np.nonzero(np.diff(z) <= 0)[0][0])
    a, b = values[i], values[i + 1]
    return (
        f"{mask.where}: disc labels are out of anatomical order: {b} (IVD label {ivd[b]}) "
        f"lies {z[i] - z[i + 1]:.1f} mm below {a} (IVD label {ivd[a]}) along the header's "
        "superior axis; disc labels must rise from inferior to superior (201 = L5/S1); left out"
    )


def _note(mask: Volume, why: str, new: Mapping[int, int]) -> str:
    pairs = ", ".join(
        f"{v} = {lab.level_name(k)}" for v, k in sorted(new.items(), key=lambda x: x[1])
    )
    return f"{mask.where}: {why}; read as {pairs}"
