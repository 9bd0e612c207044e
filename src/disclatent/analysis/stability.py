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
  any invertible linear map of either side, with a null from shuffled discs
  (:func:`canonical_null`);
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
from disclatent.stats import correlation_table


def _standardised(x: np.ndarray) -> np.ndarray:
    """Columns centred and scaled to unit SD (a constant column stays 0)."""
    x = np.asarray(x, np.float64)
    sd = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


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


def _complete(latent: np.ndarray, geometry: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lat, geo = np.asarray(latent, np.float64), np.asarray(geometry, np.float64)
    ok = np.isfinite(lat).all(axis=1) & np.isfinite(geo).all(axis=1)
    lat, geo = lat[ok], geo[ok]
    if len(lat) <= lat.shape[1] + geo.shape[1]:
        raise ValueError(f"{len(lat)} complete discs are too few for a canonical correlation")
    return _standardised(lat), _standardised(geo)


def _cancorr(lat: np.ndarray, geo: np.ndarray) -> np.ndarray:
    from statsmodels.multivariate.cancorr import CanCorr

    return np.sort(np.asarray(CanCorr(lat, geo).cancorr, float))[::-1]


def canonical_correlations(latent: np.ndarray, geometry: np.ndarray) -> np.ndarray:
    """Canonical correlations (descending, min(k, g) of them) between the latent features
    (n, k) and the geometric features (n, g) of the same discs; rows with a NaN are
    dropped, and each side is standardised first (the correlations do not depend on it)."""
    return _cancorr(*_complete(latent, geometry))


def canonical_null(
    latent: np.ndarray, geometry: np.ndarray, n_perm: int = 200, seed: int = 0
) -> np.ndarray:
    """The canonical correlations of the same matrices with the geometry's rows shuffled,
    ``n_perm`` times (n_perm, min(k, g)): what fitting k + g directions to unrelated data of
    this size gives by chance (canonical correlations are fitted and reported on the same
    discs, so they are biased upwards)."""
    lat, geo = _complete(latent, geometry)
    rng = np.random.default_rng(seed)
    return np.stack([_cancorr(lat, geo[rng.permutation(len(geo))]) for _ in range(n_perm)])


def cca_table(
    codes: Mapping[int, np.ndarray], geometry: pd.DataFrame, n_perm: int = 200, seed: int = 0
) -> pd.DataFrame:
    """:func:`canonical_correlations` per run: ``seed, component, canonical_r`` (component 1 =
    the strongest), ``null_r_95`` (the 95th percentile of that component under
    :func:`canonical_null`), ``above_null`` and the geometric features (``features``)."""
    rows = []
    for s in sorted(codes):
        r = canonical_correlations(codes[s], geometry.to_numpy(float))
        null = np.quantile(
            canonical_null(codes[s], geometry.to_numpy(float), n_perm, seed), 0.95, axis=0
        )
        for i, (value, bound) in enumerate(zip(r, null, strict=True), start=1):
            rows.append(
                {
                    "seed": s,
                    "component": i,
                    "canonical_r": float(value),
                    "null_r_95": float(bound),
                    "above_null": bool(value > bound),
                }
            )
    out = pd.DataFrame(rows)
    out["features"] = ", ".join(geometry.columns)
    return out


def align_to(reference: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``codes`` (n, k) standardised and rotated (orthogonal Procrustes) onto ``reference``'s
    standardised axes: the same discs, expressed in the reference run's basis (the rotation
    is fitted on these discs)."""
    x = _standardised(codes)
    rotation, _ = orthogonal_procrustes(x, _standardised(reference))
    return x @ rotation


def correlations_by_seed(
    codes: Mapping[int, np.ndarray], geometry: pd.DataFrame, reference: int | None = None
) -> pd.DataFrame:
    """Pearson r of every latent feature with every geometric feature, per run
    (:func:`disclatent.stats.correlation_table`, as the interpretation chapter computes
    them): columns ``seed, latent, feature, r, r_aligned`` (``r_aligned``: after
    :func:`align_to` the ``reference`` run, by default the first seed)."""
    seeds = sorted(codes)
    ref = seeds[0] if reference is None else reference
    parts = []
    for s in seeds:
        raw = np.asarray(codes[s], np.float64)
        names = latent_columns(raw.shape[1])
        r = correlation_table(pd.DataFrame(raw, columns=names, index=geometry.index), geometry)
        aligned = pd.DataFrame(align_to(codes[ref], raw), columns=names, index=geometry.index)
        ra = correlation_table(aligned, geometry)
        parts.append(
            pd.DataFrame(
                {"seed": s, "latent": r["x"], "feature": r["y"], "r": r["r"], "r_aligned": ra["r"]}
            )
        )
    return pd.concat(parts, ignore_index=True)


def correlation_spread(by_seed: pd.DataFrame, reference: int | None = None) -> pd.DataFrame:
    """Per (latent, feature): the reference run's r (the one the interpretation chapter
    shows), and over all runs the mean, SD, min and max of r and the SD of the
    Procrustes-aligned r; ``holds_share``: the share of the *other* runs whose r has the
    reference's sign and at least half its size (the same sentence could be written from
    them)."""
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
    others = by_seed[by_seed.seed != ref]
    joined = others.join(first.rename("ref"), on=["latent", "feature"])
    holds = (np.sign(joined["r"]) == np.sign(joined["ref"])) & (
        joined["r"].abs() >= joined["ref"].abs() / 2
    )
    out["holds_share"] = holds.groupby([others.latent, others.feature]).mean()
    return out.reset_index()


def strongest_by_feature(by_seed: pd.DataFrame) -> pd.DataFrame:
    """Per run and geometric feature, the latent feature with the largest |r| and its r: a
    question ("does some latent feature track AP width?") that survives relabelled axes."""
    usable = by_seed.dropna(subset=["r"])
    idx = usable.assign(abs_r=usable["r"].abs()).groupby(["seed", "feature"])["abs_r"].idxmax()
    return usable.loc[idx, ["seed", "feature", "latent", "r"]].reset_index(drop=True)


def paper_claims(
    by_seed: pd.DataFrame,
    latent_latent_max: Mapping[int, float],
    claims: Sequence[tuple[int, str, float]],
    uncorrelated_below: float,
) -> pd.DataFrame:
    """The paper's single-axis statements checked in every run: for each ``(latent index,
    feature, published r)``, the run's r for that index and whether it has the published sign
    and at least half its size; the same without the index (the latent feature with the
    largest |r| on that feature reaches half the published |r|, either sign: axes are
    numbered and signed arbitrarily); and whether the latent features are mutually
    uncorrelated (largest |r| between two of them, ``latent_latent_max`` per seed, below
    ``uncorrelated_below``)."""

    def holds(value: float, published_r: float) -> bool:
        return bool(np.sign(value) == np.sign(published_r) and abs(value) >= abs(published_r) / 2)

    rows = []
    for seed, part in by_seed.groupby("seed"):
        r = part.set_index(["latent", "feature"])["r"]
        for index, feature, published_r in claims:
            value = float(r.get((f"latent_{index}", feature), np.nan))
            claim = f"latent {index} ~ {feature} (paper r = {published_r:+.2f})"
            rows.append(
                {"seed": seed, "claim": claim, "value": value, "holds": holds(value, published_r)}
            )
            # the same statement without the index: does *some* latent feature carry it?
            on_feature = part[part.feature == feature]["r"]
            best = (
                float(on_feature.loc[on_feature.abs().idxmax()])
                if on_feature.notna().any()
                else np.nan
            )
            claim = f"some latent feature ~ {feature} (paper r = {published_r:+.2f}, any sign)"
            rows.append(
                {
                    "seed": seed,
                    "claim": claim,
                    "value": best,
                    "holds": abs(best) >= abs(published_r) / 2,
                }
            )
        top = float(latent_latent_max[seed])
        claim = f"latent features mutually uncorrelated (paper |r| < {uncorrelated_below})"
        rows.append({"seed": seed, "claim": claim, "value": top, "holds": top < uncorrelated_below})
    return pd.DataFrame(rows)
