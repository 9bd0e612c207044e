"""Disc intensity cubes (disclatent.discs.intensity) and the hand-crafted composition
measures (disclatent.discs.composition), checked against hand-computed cases and the
phantom's generating composition."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import oblique_direction
from disclatent.data.volume import DataError, Volume
from disclatent.discs import composition as comp
from disclatent.discs import intensity as it


def _linear_image(direction: np.ndarray) -> tuple[Volume, np.ndarray, float]:
    """An image whose intensity is a known linear function of LPS position."""
    shape = (30, 60, 50)  # (k, j, i)
    spacing = (0.7, 0.6, 3.0)  # (i, j, k) mm: sagittal slices 3 mm apart
    origin = (-20.0, -15.0, -30.0)
    vol = Volume(np.zeros(shape, np.float32), spacing, origin, direction)
    k, j, i = np.indices(shape)
    ijk = np.stack([i, j, k], axis=-1).reshape(-1, 3)
    xyz = vol.index_to_world(ijk.astype(float))
    g, b = np.array([0.5, -0.25, 0.75]), 100.0
    arr = (xyz @ g + b).reshape(shape).astype(np.float32)
    return Volume(arr, spacing, origin, direction), g, b


@pytest.mark.parametrize("deg", [0.0, 20.0])
def test_intensity_cube_follows_the_header_geometry(deg):
    """Linear interpolation reproduces a linear intensity field exactly at every cube voxel
    inside the image, from the header (origin, spacing, an oblique direction), in the
    cube's (SI, AP, LR) order; voxels outside the image are NaN."""
    image, g, b = _linear_image(oblique_direction(deg))
    centre, size, spacing = np.array([0.0, 5.0, -10.0]), 16, (1.0, 0.8, 0.9)
    cube = it.intensity_cube(image, centre, size, spacing)
    assert cube.shape == (size,) * 3
    si, ap, lr = np.indices(cube.shape)
    origin = centre - (size - 1) / 2 * np.array(spacing)[::-1]
    xyz = np.stack([lr * spacing[2], ap * spacing[1], si * spacing[0]], -1) + origin
    expected = xyz @ g + b
    inside = np.isfinite(cube)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(cube[inside], expected[inside], atol=1e-3)
    far = it.intensity_cube(image, centre + 500.0, size, spacing)
    assert np.isnan(far).all()


def test_reference_intensity_prefers_the_canal_then_the_vertebrae():
    img = np.full((10, 10, 10), 50.0, np.float32)
    img[:, :2] = 400.0
    mask = np.zeros((10, 10, 10), np.int16)
    mask[:, :2] = 100  # canal: bright CSF
    mask[:, 5:7] = 3  # a vertebra
    assert it.reference_intensity(Volume(img, (1, 1, 1)), Volume(mask, (1, 1, 1))) == (
        400.0,
        "spinal_canal",
    )
    mask[mask == 100] = 0
    assert it.reference_intensity(Volume(img, (1, 1, 1)), Volume(mask, (1, 1, 1))) == (
        50.0,
        "vertebrae",
    )
    with pytest.raises(DataError, match="no spinal canal"):
        it.reference_intensity(Volume(img, (1, 1, 1)), Volume(np.zeros_like(mask), (1, 1, 1)))
    with pytest.raises(DataError, match="cannot normalise"):
        it.reference_intensity(Volume(img * 0, (1, 1, 1)), Volume(mask, (1, 1, 1)))


def _cylinder(size=24, a_ap=8, a_lr=10, inner=2.0, outer=1.0):
    """A flat elliptic disc of 4 slices; intensity ``inner`` inside r <= 0.6, else ``outer``."""
    si, ap, lr = np.indices((size,) * 3)
    c = (size - 1) / 2
    r = np.hypot((ap - c) / a_ap, (lr - c) / a_lr)
    mask = ((np.abs(si - c) < 2) & (r <= 1)).astype(np.uint8)
    image = np.where(r <= 0.6, inner, outer) * mask
    return mask, image.astype(np.float32)


def test_composition_features_on_a_hand_computed_disc():
    mask, image = _cylinder()
    f = comp.composition_features(mask[None], image[None]).iloc[0]
    assert f["nucleus_signal"] == pytest.approx(2.0)  # r <= 0.5 lies inside r <= 0.6
    assert f["annulus_signal"] == pytest.approx(1.0)
    assert f["nucleus_annulus_contrast"] == pytest.approx(1.0)
    share_bright = (image[mask > 0] == 2).mean()
    assert f["disc_signal"] == pytest.approx(1 + share_bright)
    assert f["nucleus_share"] == pytest.approx(1.0)
    # a dry disc: no contrast, the same signal everywhere
    flat = comp.composition_features(mask[None], mask[None].astype(float) * 0.3).iloc[0]
    assert flat["nucleus_annulus_contrast"] == pytest.approx(0.0)
    assert flat["disc_signal"] == pytest.approx(0.3)
    # radius: 0 at the centroid, about 1 at the rim, NaN outside the disc
    r = comp.footprint_radius(mask)
    assert np.nanmin(r) < 0.1 and 0.9 < np.nanmax(r) < 1.15
    assert np.isnan(r[mask == 0]).all()
    with pytest.raises(ValueError, match="differ in shape"):
        comp.composition_features(mask[None], image[None, :-1])


def test_intensity_store_on_the_phantom_reads_composition_and_names_a_bad_series(
    phantom_dir, tmp_path
):
    """T2 discs of the phantom: normalised cubes are finite in the disc, the disc signal
    falls with the generating degeneration state (and follows hydration), a missing image
    costs only its own series (named, rows NaN), and a rerun reuses finished series."""
    import shutil

    from disclatent.discs.store import build_disc_store, load_disc_store

    cohort = tmp_path / "cohort"
    shutil.copytree(phantom_dir, cohort)
    store_path = build_disc_store(
        cohort / "masks",
        tmp_path / "t2.npz",
        spacing_mm=(2.0, 1.6, 1.9),
        size=32,
        modalities=("t2",),
        scheduler="serial",
        progress=False,
    )
    store = load_disc_store(store_path)
    out, failures = it.build_intensity_store(
        store, tmp_path / "t2-intensity.npz", scheduler="serial", progress=False
    )
    assert failures.empty
    ints = it.load_intensity_store(out)
    assert ints.cubes.shape == store.cubes.shape and ints.cubes.dtype == np.float16
    inside = store.cubes > 0
    assert np.isfinite(ints.cubes[inside].astype(float)).all()
    assert set(ints.table["reference_tissue"]) == {"spinal_canal"}
    feats = comp.composition_features(store.cubes, ints.cubes.astype(np.float32))
    truth = pd.read_csv(cohort / "phantom_truth.csv", dtype={"patient": str})
    joined = pd.concat([ints.table, feats], axis=1).merge(truth, on=["series", "ivd_label"])
    assert len(joined) == len(store)
    r = np.corrcoef(joined["nucleus_signal"], joined["hydration"])[0, 1]
    assert r > 0.6
    assert np.corrcoef(joined["nucleus_signal"], joined["degeneration"])[0, 1] < -0.6
    # negative control: hydration shuffled between discs no longer explains the signal
    rng = np.random.default_rng(0)
    shuffled = np.corrcoef(joined["nucleus_signal"], rng.permutation(joined["hydration"]))[0, 1]
    assert abs(shuffled) < r - 0.3

    cache = (tmp_path / "t2-intensity.series").iterdir()
    before = {p.name: p.stat().st_mtime_ns for p in cache}
    victim = store.table["series"].iloc[0]
    (cohort / "images" / f"{victim}.mha").unlink()
    out2, failures2 = it.build_intensity_store(
        store, tmp_path / "t2-intensity.npz", scheduler="serial", progress=False
    )
    assert failures2["series"].tolist() == [victim]
    assert "image" in failures2["error"].iloc[0] and victim in failures2["error"].iloc[0]
    again = it.load_intensity_store(out2)
    bad = (again.table["series"] == victim).to_numpy()
    assert np.isnan(again.cubes[bad].astype(float)).all()
    np.testing.assert_array_equal(again.cubes[~bad], ints.cubes[~bad])
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "t2-intensity.series").iterdir()}
    assert all(after[n] == t for n, t in before.items() if n in after)  # reused, not redone


def test_intensity_autoencoder_learns_shape_and_composition():
    """On toy discs whose nucleus brightness varies, a short training reconstructs the mask
    (IoU) and the intensity, and one latent axis follows the brightness; the input builder
    zeroes the outside and NaN, and clips."""
    from disclatent.autoencoder.composition import IntensityAutoencoder, two_channel

    rng = np.random.default_rng(0)
    masks, images, bright = [], [], []
    for _ in range(24):
        b = rng.uniform(0.3, 1.5)
        m, im = _cylinder(size=16, a_ap=5, a_lr=6, inner=b, outer=0.3)
        masks.append(m)
        images.append(im)
        bright.append(b)
    x = two_channel(np.array(masks), np.array(images))
    assert x.shape == (24, 2, 16, 16, 16) and x.dtype == np.float32
    raw = np.array(images)
    raw[0, 0, 0, 0] = np.nan
    raw[1] = raw[1] * 10
    y = two_channel(np.array(masks), raw)
    assert np.isfinite(y).all() and y[:, 1].max() <= 2.0
    assert (y[:, 1][y[:, 0] == 0] == 0).all()

    model = IntensityAutoencoder(latent_dim=2, profile="quick", epochs=60, cpu_threads=1)
    model.fit(x)
    err = model.reconstruction_error(x)
    assert err["iou"].mean() > 0.8
    # the intensity error is well below that of predicting the mean disc
    mean_disc = np.abs(x[:, 1] - x[:, 1].mean(axis=0)) * x[:, :1].squeeze(1)
    baseline = (mean_disc.sum(axis=(1, 2, 3)) / x[:, 0].sum(axis=(1, 2, 3))).mean()
    assert err["intensity_mae"].mean() < 0.6 * baseline
    z = model.transform(x)
    assert z.shape == (24, 2)
    r = max(abs(np.corrcoef(z[:, j], bright)[0, 1]) for j in range(2))
    assert r > 0.8
    mask, inten = model.decode(z[:2])
    assert mask.shape == (2, 16, 16, 16) and (inten[mask == 0] == 0).all()


def test_intensity_autoencoder_epochs_follow_the_profile_budget_of_discs(monkeypatch):
    """Like the shape model: the epoch budget holds up to the profile's ae_budget_discs
    discs (12 here against 4: 3 x 4 // 12 = 1 epoch), then the optimiser steps do."""
    from dataclasses import replace

    from disclatent import profiles
    from disclatent.autoencoder.composition import IntensityAutoencoder, two_channel

    m, im = _cylinder(size=16, a_ap=5, a_lr=6, inner=1.0, outer=0.3)
    x = two_channel(np.repeat(m[None], 12, 0), np.repeat(im[None], 12, 0))
    kw = dict(latent_dim=2, profile="quick", epochs=3, cpu_threads=1)
    assert len(IntensityAutoencoder(**kw).fit(x).history_) == 3  # quick: 250 discs
    small = replace(profiles.PROFILES["quick"], ae_budget_discs=4)
    monkeypatch.setitem(profiles.PROFILES, "quick", small)
    model = IntensityAutoencoder(**kw).fit(x)
    assert model.epochs_ == 1 and model.history_["epoch"].tolist() == [1]
