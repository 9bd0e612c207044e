"""Is a decoded disc anatomically plausible? (``book/method.md``, *Plausibility*.)

The paper notes that some latent combinations decode to implausible discs. Here a decoded
mask is **plausible** when it

* is one connected component (6-connectivity, :func:`scipy.ndimage.label`),
* has no enclosed cavity (:func:`scipy.ndimage.binary_fill_holes` adds nothing) and no hole
  through it (its Euler number is that of a solid: 1), and
* has its volume, height, AP and lateral width (measured by the geometry chapter's code,
  :func:`disclatent.discs.geometry.measure_cubes`, in mm and mm^3) inside the cohort's 1st-99th
  percentiles (:class:`PlausibilityCheck`, fitted on the cohort's measured discs).

:func:`cohort_samples` draws latent vectors from a Gaussian fitted to the cohort's codes (the
"typical" codes a user of the latent space would pass to the decoder); :func:`share` gives
the plausible share with a Wilson 95 % interval.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import ndimage
from statsmodels.stats.proportion import proportion_confint

from disclatent.discs.geometry import measure_cubes

#: the measured features that must lie inside the cohort's range
PLAUSIBILITY_FEATURES = ("volume_mm3", "height_mm", "ap_width_mm", "lateral_width_mm")


def topology(cube: np.ndarray) -> tuple[int, int, int]:
    """Connected components (6-connectivity), enclosed-cavity voxels and tunnels (holes
    through the mask, as in a ring) of a binary cube. Tunnels follow from the Euler number
    (:func:`skimage.measure.euler_number`): chi = components - tunnels + cavities."""
    from skimage.measure import euler_number

    mask = np.asarray(cube, bool)
    _, n = ndimage.label(mask)
    enclosed = ndimage.binary_fill_holes(mask) & ~mask
    _, n_cavities = ndimage.label(enclosed)
    tunnels = n + n_cavities - int(euler_number(mask, connectivity=1)) if n else 0
    return int(n), int(enclosed.sum()), int(tunnels)


class PlausibilityCheck:
    """Judge decoded discs against a cohort (scikit-learn style: :meth:`fit`, then
    :meth:`judge`).

    ``fit(geometry)`` learns ``low_`` and ``high_`` (the ``quantiles`` of each of
    ``features`` over the cohort's discs, a table like the geometry chapter's);
    ``judge(cubes, spacing_mm)`` measures binary cubes ``(n, SI, AP, LR)`` on a grid of
    ``spacing_mm`` (SI, AP, LR) and returns one row per cube.
    """

    def __init__(
        self,
        features: Sequence[str] = PLAUSIBILITY_FEATURES,
        quantiles: tuple[float, float] = (0.01, 0.99),
    ):
        self.features = features
        self.quantiles = quantiles

    def fit(self, geometry: pd.DataFrame) -> PlausibilityCheck:
        missing = [f for f in self.features if f not in geometry]
        if missing:
            raise KeyError(f"the cohort's geometry table has no {missing}")
        values = geometry[list(self.features)].astype(float)
        if values.dropna().empty:
            raise ValueError("no measured disc to learn the plausible ranges from")
        lo, hi = self.quantiles
        self.low_ = values.quantile(lo)
        self.high_ = values.quantile(hi)
        return self

    def judge(self, cubes: np.ndarray, spacing_mm: Sequence[float]) -> pd.DataFrame:
        """Columns ``components, hole_voxels, tunnels``, the measured features, ``in_range`` (all
        features inside the range), ``plausible`` and ``reason`` (empty when plausible)."""
        if not hasattr(self, "low_"):
            raise RuntimeError("PlausibilityCheck is not fitted: call fit(geometry) first")
        cubes = np.asarray(cubes)
        topo = [topology(c) for c in cubes]
        table = measure_cubes(cubes, spacing_mm, allow_empty=True)[list(self.features)]
        table.insert(0, "components", [t[0] for t in topo])
        table.insert(1, "hole_voxels", [t[1] for t in topo])
        table.insert(2, "tunnels", [t[2] for t in topo])
        reasons = [self._reasons(row) for _, row in table.iterrows()]
        table["in_range"] = [not any(r.endswith("range") for r in rs) for rs in reasons]
        table["plausible"] = [not rs for rs in reasons]
        table["reason"] = ["; ".join(rs) for rs in reasons]
        return table

    def _reasons(self, row: pd.Series) -> list[str]:
        if row["components"] == 0:
            return ["empty"]
        out = []
        if row["components"] > 1:
            out.append(f"{int(row['components'])} pieces")
        if row["hole_voxels"] > 0:
            out.append("cavity")
        if row["tunnels"] > 0:
            out.append("hole through")
        for f in self.features:
            v = row[f]
            if not np.isfinite(v) or not self.low_[f] <= v <= self.high_[f]:
                out.append(f"{f} out of range")
        return out


def cohort_samples(z: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` latent vectors (n, k) from a Gaussian with the mean and covariance of the codes
    ``z`` (m, k), seeded."""
    z = np.asarray(z, np.float64)
    rng = np.random.default_rng(seed)
    return rng.multivariate_normal(z.mean(0), np.cov(z, rowvar=False), size=n).astype(np.float32)


def share(plausible: Sequence[bool]) -> tuple[float, float, float]:
    """The plausible share and its Wilson 95 % interval."""
    flags = np.asarray(plausible, bool)
    if flags.size == 0:
        return float("nan"), float("nan"), float("nan")
    lo, hi = proportion_confint(int(flags.sum()), flags.size, method="wilson")
    return float(flags.mean()), float(lo), float(hi)


def verdict_text(row: pd.Series) -> str:
    """One line for a judged disc: "plausible" or "implausible: <reasons>"."""
    return "plausible" if bool(row["plausible"]) else f"implausible: {row['reason']}"
