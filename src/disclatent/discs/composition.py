"""Hand-crafted disc composition measures, the ones radiologists read on T2-weighted MRI.

(``book/method.md``, *Composition*.) Inputs are a disc's binary mask cube and its normalised
intensity cube (:mod:`disclatent.discs.intensity`: image / reference tissue, same grid, numpy
order (SI, AP, LR)). A fixed partition of the disc's footprint separates the nucleus from the
annulus: each disc voxel's relative radius in the axial (AP, LR) plane,

    r = sqrt(((ap - ap_c) / a_ap)^2 + ((lr - lr_c) / a_lr)^2),

about the disc's centroid ``(ap_c, lr_c)``, with ``a_ap`` and ``a_lr`` half the disc's extent
along AP and LR (in voxels, so the spacing cancels). The **inner** region ``r <= 0.5`` stands
for the nucleus, the **outer** ring ``r >= 0.75`` for the annulus. Per disc:

* ``disc_signal``: mean normalised intensity over the whole disc (the disc-to-CSF
  signal-intensity ratio when the reference is the spinal canal);
* ``nucleus_signal`` and ``annulus_signal``: means over the inner and outer regions;
* ``nucleus_annulus_contrast``: ``nucleus_signal - annulus_signal`` (reference units);
* ``nucleus_share``: the share of inner voxels brighter than halfway between the annulus
  and the brightest decile (a bright-nucleus extent).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "ANNULUS_R",
    "COMPOSITION_FEATURES",
    "NUCLEUS_R",
    "composition_features",
    "footprint_radius",
]

NUCLEUS_R = 0.5  # relative footprint radius of the inner (nucleus) region
ANNULUS_R = 0.75  # relative footprint radius beyond which the ring is the annulus
#: the measures of :func:`composition_features`, in column order
COMPOSITION_FEATURES = [
    "disc_signal",
    "nucleus_signal",
    "annulus_signal",
    "nucleus_annulus_contrast",
    "nucleus_share",
]


def footprint_radius(mask: np.ndarray) -> np.ndarray:
    """Relative axial radius ``r`` (module docstring) of every voxel of a mask cube
    ``[si, ap, lr]`` (NaN outside the disc)."""
    m = np.asarray(mask) > 0
    r = np.full(m.shape, np.nan)
    if not m.any():
        return r
    _, ap, lr = np.nonzero(m)
    ap_c, lr_c = ap.mean(), lr.mean()
    a_ap = max(0.5 * (ap.max() - ap.min() + 1), 0.5)
    a_lr = max(0.5 * (lr.max() - lr.min() + 1), 0.5)
    r[m] = np.hypot((ap - ap_c) / a_ap, (lr - lr_c) / a_lr)
    return r


def _one(mask: np.ndarray, image: np.ndarray) -> dict[str, float]:
    r = footprint_radius(mask)
    inside = np.isfinite(r)
    values = np.asarray(image, float)
    ok = inside & np.isfinite(values)
    if not ok.any():
        return dict.fromkeys(COMPOSITION_FEATURES, np.nan)
    inner = ok & (r <= NUCLEUS_R)
    outer = ok & (r >= ANNULUS_R)
    disc = float(values[ok].mean())
    nucleus = float(values[inner].mean()) if inner.any() else np.nan
    annulus = float(values[outer].mean()) if outer.any() else np.nan
    top = float(np.quantile(values[ok], 0.9))
    half = 0.5 * (annulus + top) if np.isfinite(annulus) else np.nan
    share = float((values[inner] > half).mean()) if inner.any() and np.isfinite(half) else np.nan
    return {
        "disc_signal": disc,
        "nucleus_signal": nucleus,
        "annulus_signal": annulus,
        "nucleus_annulus_contrast": nucleus - annulus,
        "nucleus_share": share,
    }


def composition_features(masks: np.ndarray, images: np.ndarray) -> pd.DataFrame:
    """:data:`COMPOSITION_FEATURES` of each disc: ``masks`` ``(n, S, S, S)`` binary cubes and
    ``images`` the normalised intensity cubes on the same grids (NaN voxels ignored); one
    row per disc, NaN where a disc has no finite intensity."""
    masks, images = np.asarray(masks), np.asarray(images)
    if masks.shape != images.shape:
        raise ValueError(f"masks {masks.shape} and intensity cubes {images.shape} differ in shape")
    rows = [_one(m, i) for m, i in zip(masks, images, strict=True)]
    return pd.DataFrame(rows, columns=COMPOSITION_FEATURES)
