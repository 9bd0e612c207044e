"""SPIDER mask label values, structures and spinal level names.

SPIDER (van der Graaf et al. 2024) labels its masks as follows:

* ``0`` background
* ``1..25`` vertebrae, ``1`` = L5, counting upward (``2`` = L4, ..., ``5`` = L1, ``6`` = T12)
* ``100`` spinal canal
* ``101..125`` partially visible vertebrae (``100 + k`` for vertebra ``k``)
* ``201..225`` intervertebral discs, ``201`` = L5/S1, counting upward

The radiological gradings name a disc by its *IVD label* ``k = label - 200``
(``1`` = L5/S1, ``5`` = L1/L2, ``6`` = T12/L1).
"""

from __future__ import annotations

from typing import Literal

DISC_LABEL_OFFSET = 200
SPINAL_CANAL_LABEL = 100
PARTIAL_VERTEBRA_OFFSET = 100
MAX_INDEX = 25

Structure = Literal["background", "vertebra", "partial_vertebra", "spinal_canal", "disc"]

# Vertebrae from the bottom of the lumbar spine upward: index 1 = L5.
_VERTEBRAE_UPWARD = (
    ["L5", "L4", "L3", "L2", "L1"]
    + [f"T{n}" for n in range(12, 0, -1)]
    + [f"C{n}" for n in range(7, 0, -1)]
)


def vertebra_name(index: int) -> str:
    """Name of vertebra ``index`` (1 = L5, 2 = L4, ..., 6 = T12)."""
    if not 1 <= index <= len(_VERTEBRAE_UPWARD):
        raise ValueError(f"vertebra index {index} outside 1..{len(_VERTEBRAE_UPWARD)}")
    return _VERTEBRAE_UPWARD[index - 1]


def level_name(ivd_label: int) -> str:
    """Spinal level of IVD label ``k`` (1 = "L5/S1", 2 = "L4/L5", ..., 6 = "T12/L1")."""
    if not 1 <= ivd_label <= MAX_INDEX:
        raise ValueError(f"IVD label {ivd_label} outside 1..{MAX_INDEX}")
    below = "S1" if ivd_label == 1 else vertebra_name(ivd_label - 1)
    return f"{vertebra_name(ivd_label)}/{below}"


def ivd_label_of_level(level: str) -> int:
    """Inverse of :func:`level_name` ("L4/L5" -> 2)."""
    for k in range(1, MAX_INDEX + 1):
        if level_name(k) == level:
            return k
    raise ValueError(f"unknown spinal level {level!r}")


def disc_mask_label(ivd_label: int) -> int:
    """Mask value of disc ``ivd_label`` (1 -> 201)."""
    level_name(ivd_label)  # validates the range
    return DISC_LABEL_OFFSET + ivd_label


def is_disc_label(value: int) -> bool:
    return DISC_LABEL_OFFSET < value <= DISC_LABEL_OFFSET + MAX_INDEX


def ivd_label_of_mask_value(value: int) -> int:
    """IVD label of a disc mask value (201 -> 1); raises for non-disc values."""
    if not is_disc_label(value):
        raise ValueError(f"mask value {value} is not a SPIDER disc label (201..225)")
    return value - DISC_LABEL_OFFSET


def structure_of(value: int) -> Structure:
    """Which structure a SPIDER mask value stands for; raises ``ValueError`` if none."""
    if value == 0:
        return "background"
    if 1 <= value <= MAX_INDEX:
        return "vertebra"
    if value == SPINAL_CANAL_LABEL:
        return "spinal_canal"
    if PARTIAL_VERTEBRA_OFFSET < value <= PARTIAL_VERTEBRA_OFFSET + MAX_INDEX:
        return "partial_vertebra"
    if is_disc_label(value):
        return "disc"
    raise ValueError(f"mask value {value} is not a SPIDER label")


def describe_label(value: int) -> str:
    """Human-readable name of a mask value ("disc L4/L5", "vertebra L5", ...)."""
    kind = structure_of(value)
    if kind == "disc":
        return f"disc {level_name(value - DISC_LABEL_OFFSET)}"
    if kind == "vertebra":
        return f"vertebra {vertebra_name(value)}"
    if kind == "partial_vertebra":
        return f"partial vertebra {vertebra_name(value - PARTIAL_VERTEBRA_OFFSET)}"
    return kind.replace("_", " ")


def is_known_label(value: int) -> bool:
    try:
        structure_of(int(value))
    except ValueError:
        return False
    return True
