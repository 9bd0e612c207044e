"""Does a latent space survive retraining? Similarity of the codes of autoencoders that differ
only in their seed (``book/method.md``, *Stability*).

A trained latent space is defined only up to an invertible map: retrain with another seed and
"latent feature 2" may come back as feature 0, negated, or spread over several features. So a
claim about one latent axis means something only if it holds across seeds, and the questions
that do not depend on which axis is which are asked with invariant measures:

* :func:`linear_cka`: linear centred kernel alignment (Kornblith et al. 2019) of two code
  matrices of the same discs, 1 for codes equal up to a rotation, reflection and uniform scale;
* :func:`procrustes_r2`: the share of one run's (centred, normalised) codes explained by the
  other's after the best rotation and scale (:func:`scipy.spatial.procrustes`);
* :func:`canonical_correlations`: the canonical correlations between the k latent features and
  the geometric features (:class:`statsmodels.multivariate.cancorr.CanCorr`), invariant to
  any invertible linear map of either side;
* :func:`correlations_by_seed` / :func:`correlation_spread`: each latent-geometry Pearson r as
  the interpretation chapter reports it, per seed, raw and after aligning each seed's axes to
  the first seed's (orthogonal Procrustes), and the spread over seeds;
* :func:`paper_claims`: the paper's statements about single axes, checked per seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np
import pandas as pd
from scipy.linalg import orthogonal_procrustes
from scipy.spatial import procrustes

from disclatent.conventions import latent_columns


def _centred(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected a (discs, features) matrix, got shape {x.shape}")
    return x - x.mean(axis=0, keepdims=True)


def _same_discs(x: np.ndarray, y: np.ndarray) -> None:
    if len(x) != len(y):
        raise ValueError(f"codes of different discs: {len(x)} rows against {len(y)}")
    if len(x) < 3:
        raise ValueError("at least 3 discs are needed to compare two latent spaces")


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two code matrices (n discs, k and m features) of the same discs:
    ``||Y'X||_F^2 / (||X'X||_F ||Y'Y||_F)`` on centred columns; 0-1, invariant to rotations,
    reflections and a uniform scale of either side (not to a non-uniform rescaling)."""
    _same_discs(x, y)
    xc, yc = _centred(x), _centred(y)
    cross = np.linalg.norm(yc.T @ xc, "fro") ** 2
    norm = np.linalg.norm(xc.T @ xc, "fro") * np.linalg.norm(yc.T @ yc, "fro")
    return float(cross / norm) if norm > 0 else float("nan")


def procrustes_r2(x: np.ndarray, y: np.ndarray) -> float:
    """R^2 of an orthogonal Procrustes fit of ``y`` to ``x`` (same discs, same width): both
    centred and scaled to unit Frobenius norm, ``y`` rotated (or reflected) and scaled onto
    ``x``; 1 - the residual sum of squares. Symmetric in ``x`` and ``y``."""
    _same_discs(x, y)
    _, _, disparity = procrustes(np.asarray(x, np.float64), np.asarray(y, np.float64))
    return float(1.0 - disparity)


def pairwise_similarity(codes: Mapping[int, np.ndarray]) -> pd.DataFrame:
    """CKA and Procrustes R^2 between the codes of every pair of runs (``{seed: (n, k)}``,
    the same discs in the same order): columns ``seed_a, seed_b, cka, procrustes_r2``."""
    rows = [
        {
            "seed_a": a,
            "seed_b": b,
            "cka": linear_cka(codes[a], codes[b]),
            "procrustes_r2": procrustes_r2(codes[a], codes[b]),
        }
        for a, b in combinations(sorted(codes), 2)
    ]
    return pd.DataFrame(rows, columns=["seed_a", "seed_b", "cka", "procrustes_r2"])


def canonical_correlations(latent: np.ndarray, geometry: np.ndarray) -> np.ndarray:
    """Canonical correlations (descending, min(k, g) of them) between the latent features
    (n, k) and the geometric features (n, g) of the same discs; rows with a NaN are
    dropped, and each side is standardised first (the correlations do not depend on it)."""
    from statsmodels.multivariate.cancorr import CanCorr

    lat, geo = np.asarray(latent, np.float64), np.asarray(geometry, np.float64)
    ok = np.isfinite(lat).all(axis=1) & np.isfinite(geo).all(axis=1)
    lat, geo = lat[ok], geo[ok]
    if len(lat) <= lat.shape[1] + geo.shape[1]:
        raise ValueError(f"{len(lat)} complete discs are too few for a canonical correlation")
    z = [(a - a.mean(0)) / np.where(a.std(0) > 0, a.std(0), 1.0) for a in (lat, geo)]
    return np.sort(np.asarray(CanCorr(z[0], z[1]).cancorr, float))[::-1]


def cca_table(codes: Mapping[int, np.ndarray], geometry: pd.DataFrame) -> pd.DataFrame:
    """:func:`canonical_correlations` per run: ``seed, component, canonical_r`` (component 1 =
    the strongest), the geometric features named in ``features``."""
    rows = []
    for seed in sorted(codes):
        r = canonical_correlations(codes[seed], geometry.to_numpy(float))
        for i, value in enumerate(r, start=1):
            rows.append({"seed": seed, "component": i, "canonical_r": float(value)})
    out = pd.DataFrame(rows)
    out["features"] = ", ".join(geometry.columns)
    return out


def align_to(reference: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``codes`` (n, k) standardised and rotated (orthogonal Procrustes) onto ``reference``'s
    standardised axes: the same discs, expressed in the reference run's basis."""
    ref, x = (
        (a - a.mean(0)) / np.where(a.std(0) > 0, a.std(0), 1.0)
        for a in (np.asarray(reference, np.float64), np.asarray(codes, np.float64))
    )
    rotation, _ = orthogonal_procrustes(x, ref)
    return x @ rotation


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def correlations_by_seed(
    codes: Mapping[int, np.ndarray], geometry: pd.DataFrame, reference: int | None = None
) -> pd.DataFrame:
    """Pearson r of every latent feature with every geometric feature, per run: columns
    ``seed, latent, feature, r, r_aligned`` (``r_aligned``: after :func:`align_to` the
    ``reference`` run, by default the first seed)."""
    seeds = sorted(codes)
    ref = seeds[0] if reference is None else reference
    rows = []
    for seed in seeds:
        raw = np.asarray(codes[seed], np.float64)
        aligned = align_to(codes[ref], raw)
        for j, name in enumerate(latent_columns(raw.shape[1])):
            for feature in geometry.columns:
                g = geometry[feature].to_numpy(float)
                rows.append(
                    {
                        "seed": seed,
                        "latent": name,
                        "feature": feature,
                        "r": _pearson(raw[:, j], g),
                        "r_aligned": _pearson(aligned[:, j], g),
                    }
                )
    return pd.DataFrame(rows)


def correlation_spread(by_seed: pd.DataFrame, reference: int | None = None) -> pd.DataFrame:
    """Per (latent, feature): the reference run's r (the one the interpretation chapter
    shows), and over all runs the mean, SD, min and max of r, ``holds_share`` (the share of
    runs whose r has the reference's sign and at least half its size: the same claim would
    be made from them) and the SD of the Procrustes-aligned r."""
    ref = by_seed["seed"].min() if reference is None else reference
    first = by_seed[by_seed.seed == ref].set_index(["latent", "feature"])["r"]
    g = by_seed.groupby(["latent", "feature"])
    out = pd.DataFrame(
        {
            "r_reference": first,
            "r_mean": g["r"].mean(),
            "r_sd": g["r"].std(ddof=1),
            "r_min": g["r"].min(),
            "r_max": g["r"].max(),
            "aligned_r_sd": g["r_aligned"].std(ddof=1),
        }
    )
    joined = by_seed.join(first.rename("ref"), on=["latent", "feature"])
    holds = (np.sign(joined["r"]) == np.sign(joined["ref"])) & (
        joined["r"].abs() >= joined["ref"].abs() / 2
    )
    out["holds_share"] = holds.groupby([by_seed.latent, by_seed.feature]).mean()
    return out.reset_index()


def strongest_by_feature(by_seed: pd.DataFrame) -> pd.DataFrame:
    """Per run and geometric feature, the latent feature with the largest |r| and its r: a
    question ("does some latent feature track AP width?") that survives relabelled axes."""
    idx = by_seed.assign(abs_r=by_seed["r"].abs()).groupby(["seed", "feature"])["abs_r"].idxmax()
    return by_seed.loc[idx.dropna(), ["seed", "feature", "latent", "r"]].reset_index(drop=True)


def paper_claims(
    by_seed: pd.DataFrame,
    latent_latent_max: Mapping[int, float],
    claims: Sequence[tuple[int, str, float]],
    uncorrelated_below: float,
) -> pd.DataFrame:
    """The paper's single-axis statements checked in every run: for each ``(latent index,
    feature, published r)``, the run's r for that index and whether it has the published sign
    and at least half its size; and whether the latent features are mutually uncorrelated
    (largest |r| between two of them, ``latent_latent_max`` per seed, below
    ``uncorrelated_below``)."""
    rows = []
    for seed, part in by_seed.groupby("seed"):
        r = part.set_index(["latent", "feature"])["r"]
        for index, feature, published_r in claims:
            value = float(r.get((f"latent_{index}", feature), np.nan))
            holds = np.sign(value) == np.sign(published_r) and abs(value) >= abs(published_r) / 2
            claim = f"latent {index} ~ {feature} (paper r = {published_r:+.2f})"
            rows.append({"seed": seed, "claim": claim, "value": value, "holds": bool(holds)})
        top = float(latent_latent_max[seed])
        claim = f"latent features mutually uncorrelated (paper |r| < {uncorrelated_below})"
        rows.append({"seed": seed, "claim": claim, "value": top, "holds": top < uncorrelated_below})
    return pd.DataFrame(rows)
