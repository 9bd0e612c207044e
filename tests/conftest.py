from __future__ import annotations

import numpy as np
import pytest

from disclatent.data.phantom import write_phantom
from disclatent.data.volume import Volume


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory):
    """A 4-patient phantom cohort (one patient per site), written once per session."""
    out = tmp_path_factory.mktemp("phantom") / "cohort"
    write_phantom(out, n_patients=4, seed=7, workers=1)
    return out


def oblique_direction(deg: float = 20.0) -> np.ndarray:
    """A proper rotation about the AP axis, for non-identity headers."""
    t = np.deg2rad(deg)
    return np.array([[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]])


def small_mask(direction=None, spacing=(3.5, 0.6, 0.55)) -> Volume:
    arr = np.zeros((20, 16, 8), np.int16)
    arr[5:8, 4:12, 2:6] = 201
    arr[12:14, 3:13, 1:7] = 202
    arr[0:4, 4:12, 2:6] = 1
    return Volume(arr, spacing, (-10.0, 20.0, -30.0), np.eye(3) if direction is None else direction)
