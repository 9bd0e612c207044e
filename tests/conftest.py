from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from disclatent.autoencoder.config import AEConfig
from disclatent.data.phantom import write_phantom
from disclatent.data.volume import Volume
from disclatent.parallel import SCHEDULER_ENV

ROOT = Path(__file__).resolve().parents[1]

# in-process tests run the per-series steps serially (a LocalCluster per call would cost
# seconds each); the local and remote schedulers are tested on purpose (test_parallel,
# test_isolation), and the book is built as a reader builds it, with the default scheduler
_READER_ENV = {k: v for k, v in os.environ.items() if k != SCHEDULER_ENV}
os.environ.setdefault(SCHEDULER_ENV, "serial")


def build_quick_book(build_dir: Path) -> subprocess.CompletedProcess:
    """``python -m disclatent book --profile quick --build-dir build_dir``, as a reader runs it."""
    return subprocess.run(
        [sys.executable, "-m", "disclatent", "book", "--profile", "quick"]
        + ["--build-dir", str(build_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
        env=_READER_ENV,
    )


@pytest.fixture(scope="session")
def quick_book(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The quick-profile book, built once per session: its build folder and the run."""
    build_dir = tmp_path_factory.mktemp("book") / "_build"
    return build_dir, build_quick_book(build_dir)


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


# a small autoencoder configuration and cubes for the autoencoder tests
TINY = AEConfig(
    latent_dim=4,
    size=16,
    spacing_mm=(2.0, 2.0, 2.0),
    channels=(16, 32),
    max_epochs=3,
    batch_size=4,
    lr=3e-3,
    schedule="onecycle",
    loss="dice_bce",
    freeze_bn_epoch=0,
)


# decoder-first training of TINY (GroupNorm, kernel-4 decoder), short, without early stop
DECODER_FIRST = AEConfig(
    **{
        **TINY.to_dict(),
        "norm": "group",
        "decoder_kernel": 4,
        "schedule": "cosine",
        "strategy": "decoder_first",
        "max_epochs": 3,
        "encoder_epochs": 3,
        "stop_at_target": False,
    }
)


def ellipsoids(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    """Binary ellipsoids of random semi-axes, tilt and sub-voxel offset (SI, AP, LR)."""
    rng = np.random.default_rng(seed)
    c = np.arange(size) - (size - 1) / 2
    si, ap, lr = np.meshgrid(c, c, c, indexing="ij")
    out = np.zeros((n, size, size, size), np.uint8)
    for i in range(n):
        a = rng.uniform([1.5, 3.5, 4.5], [2.5, 5.5, 6.5])
        t = rng.uniform(-0.4, 0.4)
        off = rng.uniform(-0.5, 0.5, 3)
        s2 = (si - off[0]) * np.cos(t) - (ap - off[1]) * np.sin(t)
        a2 = (si - off[0]) * np.sin(t) + (ap - off[1]) * np.cos(t)
        out[i] = ((s2 / a[0]) ** 2 + (a2 / a[1]) ** 2 + ((lr - off[2]) / a[2]) ** 2) <= 1
    return out


SPIDER_SHARED = ROOT.parent / "shared" / "data" / "spider"


@pytest.fixture(scope="session")
def spider_shared() -> Path:
    """The real SPIDER files kept beside the repository (metadata, patient 1's masks)."""
    if not (SPIDER_SHARED / "masks" / "1_t1.mha").exists():
        pytest.skip(f"real SPIDER files not found at {SPIDER_SHARED} (kept outside the repository)")
    return SPIDER_SHARED
