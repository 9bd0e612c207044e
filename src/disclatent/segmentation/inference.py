"""Segmenting images with a trained model, and evaluating the masks (``book/method.md``,
*Segmentation*).

**Inference**: the image is resampled to the network grid and normalised as in training;
sliding-window logits, one sigmoid, probabilities resampled back to the image's own grid
(linear) and thresholded at 0.5, then split into disc instances 201, 202, ... from the
bottom up (:func:`disclatent.segmentation.evaluation.label_instances`). Masks are written
in SPIDER format with the input file names. :func:`predict_images` runs one
:func:`disclatent.parallel.run_tasks` task per series (serially, on a LocalCluster or on a
running Dask cluster), each result kept under a key of the image's and the model's bytes.
"""

from __future__ import annotations

import functools
import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from disclatent.accel import resolve_device
from disclatent.conventions import PAPER_SPACING, Spacing
from disclatent.data import phantom
from disclatent.data.spider import SpiderFolder
from disclatent.data.volume import (
    DataError,
    Volume,
    image_suffix,
    list_images,
    read_image,
    read_mask,
    series_name,
    write_csv_atomic,
    write_image,
    write_text_atomic,
)
from disclatent.parallel import Task, code_version, file_stamp, in_dask_worker, run_tasks
from disclatent.segmentation.config import CONFIG_FILE, MODEL_FILE, SegConfig
from disclatent.segmentation.data import (
    Case,
    SeriesSkippedWarning,
    normalise_intensity,
    resample_like,
    resample_to_spacing,
)
from disclatent.segmentation.evaluation import ModelEvaluation, evaluate_series, label_instances
from disclatent.segmentation.network import (
    build_model,
    set_threads,
    sigmoid,
    sliding_logits,
)
from disclatent.segmentation.training import read_split

if TYPE_CHECKING:
    import torch

#: where the chapter writes, inside a model folder, the masks of models other than the one
#: feeding later chapters (test series) and of every series (per-site comparison)
TEST_PRED = "test_pred"
ALL_PRED = "all_pred"


class Segmenter:
    """A trained model folder, ready to segment images."""

    model_dir: Path | None
    cfg: SegConfig
    device: torch.device
    model: torch.nn.Module

    def __init__(self, model_dir: str | Path, device: str | None = None):
        from safetensors.torch import load_file

        self.model_dir = Path(model_dir)
        try:
            saved = json.loads((self.model_dir / CONFIG_FILE).read_text())
        except OSError as exc:
            raise DataError(
                f"{self.model_dir / CONFIG_FILE}: not a trained model folder "
                "(run `segment train` first)"
            ) from exc
        self.cfg = SegConfig.from_json(saved["config"])
        weights = self.model_dir / MODEL_FILE
        if not weights.exists():
            raise DataError(f"{weights}: model weights not found")
        self.device = resolve_device(device or self.cfg.device)
        set_threads(self.cfg, self.device)
        self.model = build_model(self.cfg)
        self.model.load_state_dict(load_file(str(weights)))
        self.model.to(self.device).eval()

    @classmethod
    def from_model(cls, model: torch.nn.Module, cfg: SegConfig, device: str = "cpu") -> Segmenter:
        """Wrap an in-memory model (tests, benchmarks)."""
        self = cls.__new__(cls)
        self.model_dir, self.cfg = None, cfg
        self.device = resolve_device(device)
        set_threads(cfg, self.device)
        self.model = model.to(self.device).eval()
        return self

    def probability(self, image: Volume) -> Volume:
        """Disc probability on the image's own voxel grid (float32)."""
        case = load_case_from_volume(image, self.cfg.network_spacing)
        prob = sigmoid(sliding_logits(self.model, case.image, self.cfg, self.device))
        return resample_like(case.grid.with_array(prob), image, label=False)

    def segment(self, image: Volume) -> tuple[Volume, dict]:
        """Disc instances 201, 202, ... (SPIDER labels, numbered upward) on the image's grid."""
        prob = self.probability(image)
        fg = prob.with_array((prob.array > self.cfg.threshold).astype(np.uint8))
        return label_instances(fg, self.cfg.min_disc_mm3)


def load_case_from_volume(image: Volume, spacing: Spacing = PAPER_SPACING) -> Case:
    """An image already in memory on the network grid, normalised (no mask)."""
    net = resample_to_spacing(image, spacing, label=False)
    arr = normalise_intensity(net.array)
    return Case(series_name(image.path) if image.path else "", arr, None, net.with_array(arr))


def _image_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if (path / "images").is_dir():
        path = path / "images"
    files = list_images(path)
    if not files:
        raise DataError(f"{path}: no image files found")
    return files


def predict_images(
    model_dir: str | Path,
    images: str | Path,
    out: str | Path,
    series: list[str] | None = None,
    log: Callable[[str], None] | None = None,
    segmenter: Segmenter | None = None,
    skip_errors: bool = False,
    scheduler: str | None = None,
    workers: int | None = None,
    cache_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Segment an image, a folder of images or a SPIDER folder's ``images/``; write SPIDER
    masks with the input file names to ``out/masks/``. Returns one row per series.

    Each series is one :func:`disclatent.parallel.run_tasks` task (``scheduler``: ``serial``,
    ``local`` - a LocalCluster of ``workers`` processes, one torch thread each - or a
    scheduler's address; default ``$DISCLATENT_SCHEDULER``, else ``local``). A worker loads
    the model once and segments its series; the mask is kept in ``cache_dir`` (default
    ``out/.series/``) under a key of the image's bytes, the model's weights and config and
    this code, so a rerun after an interruption segments only what is not done. A series
    that fails (unreadable image, ...) is named and the others are written; then a
    :class:`DataError` lists the failures, or with ``skip_errors`` a warning does and the
    table holds the others (``table.attrs["failures"]``: series, error).

    ``segmenter`` (an in-memory model, :meth:`Segmenter.from_model`) segments in this
    process, without the cache.
    """
    if segmenter is None:  # a missing or broken model folder fails here, before any task
        _worker_segmenter(str(Path(model_dir).resolve()), file_stamp(Path(model_dir) / MODEL_FILE))
    files = _image_files(Path(images))
    if series is not None:
        wanted = set(series)
        files = [f for f in files if series_name(f) in wanted]
    out = Path(out)
    if segmenter is not None:
        rows = [_segment_and_write(segmenter, f, out, log) for f in files]
        table = pd.DataFrame(rows)
        table.attrs["failures"] = pd.DataFrame(columns=["series", "error"])
        return table
    model_dir = Path(model_dir)
    model_files = (model_dir / MODEL_FILE, model_dir / CONFIG_FILE)
    tasks = [
        Task(
            series_name(f),
            (f, *model_files),
            {"model_dir": str(model_dir.resolve()), "target": str(out / "masks" / f.name)},
        )
        for f in files
    ]
    run = run_tasks(
        segment_series,
        tasks,
        Path(cache_dir) if cache_dir is not None else out / ".series",
        salt=code_version(
            "segmentation.inference",
            "segmentation.network",
            "segmentation.data",
            "segmentation.evaluation",
        ),
        scheduler=scheduler,
        workers=workers,
        progress=log is not None,
        desc="segmenting",
    )
    rows = []
    for task in tasks:
        if task.name not in run.files:
            continue
        target = Path(task.params["target"])
        with np.load(run.files[task.name], allow_pickle=False) as z:
            info = json.loads(str(z["info"]))
            if not target.exists():  # the worker wrote it; rewrite it if it was removed since
                write_image(
                    Volume(z["mask"], tuple(z["spacing"]), tuple(z["origin"]), z["direction"]),
                    target,
                )
        rows.append({"series": task.name, "file": str(target), **info})
        if log:
            log(f"{task.name}: {info['n_discs']} discs, {info['seconds']:.1f} s")
    table = pd.DataFrame(rows, columns=None if rows else ["series", "file", "seconds"])
    table.attrs["failures"] = run.failures
    if len(run.failures):
        names = "; ".join(f"{r.series}: {r.error}" for r in run.failures.itertuples())
        message = f"{len(run.failures)} series could not be segmented ({names})"
        if not skip_errors:
            raise DataError(f"{message}; the others are written to {out / 'masks'}")
        warnings.warn(message, UserWarning, stacklevel=2)
    return table


def _segment_file(seg: Segmenter, image_path: Path, target: Path) -> tuple[Volume, dict]:
    """Segment one image file and write its int16 SPIDER mask to ``target`` (atomically);
    the mask and the instance summary with the ``seconds`` it took."""
    t0 = time.perf_counter()
    image = read_image(image_path)
    mask, info = seg.segment(image)
    labels = Volume(mask.array.astype(np.int16), image.spacing, image.origin, image.direction)
    write_image(labels, target)
    info["seconds"] = time.perf_counter() - t0
    return labels, info


def _segment_and_write(
    seg: Segmenter, f: Path, out: Path, log: Callable[[str], None] | None
) -> dict[str, Any]:
    target = out / "masks" / f.name
    _, info = _segment_file(seg, f, target)
    if log:
        log(f"{series_name(f)}: {info['n_discs']} discs, {info['seconds']:.1f} s")
    return {"series": series_name(f), "file": str(target), **info}


@functools.lru_cache(maxsize=2)
def _worker_segmenter(model_dir: str, weights_key: tuple[int, int]) -> Segmenter:
    """One model per process (and per version of its weights file, ``weights_key``)."""
    seg = Segmenter(model_dir)
    if in_dask_worker() and seg.device.type == "cpu":
        import torch

        torch.set_num_threads(1)  # one thread per worker: the cluster has a worker per core
    return seg


def segment_series(task: Task, out: Path) -> None:
    """One series of :func:`predict_images` (a :func:`~disclatent.parallel.run_tasks`
    task): writes the SPIDER mask to ``params["target"]`` (atomically), and to ``out``
    (``.npz``) the int16 mask on the image's grid, its geometry, the instance summary and
    the seconds it took, so a rerun reuses it."""
    model_dir = task.params["model_dir"]
    seg = _worker_segmenter(model_dir, file_stamp(Path(model_dir) / MODEL_FILE))
    labels, info = _segment_file(seg, task.inputs[0], Path(task.params["target"]))
    with open(out, "wb") as fh:
        np.savez_compressed(
            fh,
            mask=labels.array,
            spacing=np.asarray(labels.spacing, float),
            origin=np.asarray(labels.origin, float),
            direction=np.asarray(labels.direction, float),
            info=np.array(json.dumps(info)),
        )


def _write_cohort_tables(folder: SpiderFolder, chosen: pd.DataFrame, out_root: Path) -> None:
    """``overview.csv``, gradings and the phantom's truth, restricted to ``chosen``."""
    series, patients = set(chosen["series"]), set(chosen["patient"])
    overview = pd.read_csv(folder.overview_csv)
    names = (
        overview["new_file_name"]
        .astype(str)
        .map(lambda s: series_name(s) if image_suffix(s) else s)
    )
    write_csv_atomic(overview[names.isin(series)], out_root / "overview.csv")
    if folder.gradings_csv.exists():
        grad = pd.read_csv(folder.gradings_csv)
        write_csv_atomic(
            grad[grad["Patient"].astype(str).isin(patients)],
            out_root / "radiological_gradings.csv",
        )
    if phantom.has_truth(folder.root):
        t = phantom.read_truth(folder.root)
        write_csv_atomic(t[t["series"].isin(series)], out_root / phantom.TRUTH_FILE)


def write_pred_cohort(
    model_dir: str | Path,
    data_root: str | Path,
    out_root: str | Path,
    roles: tuple[str, ...] = ("test",),
    log: Callable[[str], None] | None = None,
    segmenter: Segmenter | None = None,
) -> pd.DataFrame:
    """Predicted masks of the ``roles`` series of a model's split, as a SPIDER-format folder.

    ``out_root`` gets ``masks/`` (predicted, same file names and grids as the images),
    ``overview.csv`` and ``radiological_gradings.csv`` restricted to those series/patients
    (so :func:`disclatent.data.spider.disc_table` and the later chapters read it unchanged), the
    phantom's ``phantom_truth.csv`` restricted likewise when the source has one (it describes
    the anatomy, not a mask), and ``prediction.json`` naming the model and source.
    Images are not copied: they stay in ``data_root``.
    """
    model_dir, data_root, out_root = Path(model_dir), Path(data_root), Path(out_root)
    split = read_split([model_dir])
    chosen = split[split["role"].isin(roles)]
    folder = SpiderFolder(data_root)
    table = predict_images(
        model_dir,
        folder.images_dir,
        out_root,
        series=chosen["series"].tolist(),
        log=log,
        segmenter=segmenter,
        skip_errors=True,
    )
    _write_cohort_tables(folder, chosen, out_root)
    cfg = json.loads((model_dir / CONFIG_FILE).read_text())["config"]
    manifest = {
        "source": "pred",
        "model": cfg["model"],
        "model_dir": str(model_dir.resolve()),
        "data_root": str(data_root.resolve()),
        "roles": list(roles),
        "series": table["series"].tolist(),
        "labels": "201, 202, ... numbered upward from the most inferior predicted disc",
    }
    write_text_atomic(json.dumps(manifest, indent=2) + "\n", out_root / "prediction.json")
    return table


def read_manifest(pred_root: str | Path) -> dict[str, Any]:
    """``prediction.json`` of a predicted cohort (:func:`write_pred_cohort`)."""
    return json.loads((Path(pred_root) / "prediction.json").read_text())


def evaluate_folder(
    pred_root: str | Path, data_root: str | Path, series: list[str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-series and per-disc evaluation of predicted masks against a SPIDER folder.

    A series that cannot be scored (its prediction is missing, its truth mask unreadable,
    without any disc or on another grid than its image) is left out with a
    :class:`~disclatent.segmentation.data.SeriesSkippedWarning` naming it; the per-series
    table lists them in ``attrs["skipped"]`` (series, reason).
    """
    pred_folder, truth = SpiderFolder(Path(pred_root)), SpiderFolder(Path(data_root))
    names = series if series is not None else pred_folder.series(modalities=None)
    rows, discs, skipped = [], [], []
    for s in names:
        try:
            pred = read_mask(pred_folder.mask_path(s))
            row, d = evaluate_series(pred, read_mask(truth.mask_path(s), require_discs=True), s)
        except DataError as exc:
            skipped.append({"series": s, "reason": str(exc)})
            warnings.warn(f"{s} left out of the evaluation: {exc}", SeriesSkippedWarning, 2)
            continue
        rows.append(row)
        discs.append(d)
    disc_df = pd.concat(discs, ignore_index=True) if discs else pd.DataFrame()
    table = pd.DataFrame(rows)
    table.attrs["skipped"] = pd.DataFrame(skipped, columns=["series", "reason"])
    return table, disc_df


def evaluate_test_site(
    model_dir: str | Path, data_root: str | Path, out_root: str | Path
) -> ModelEvaluation:
    """Segment the test series of a model's split into ``out_root``
    (:func:`write_pred_cohort`) and evaluate them against the truth."""
    table = write_pred_cohort(model_dir, data_root, out_root)
    series_df, disc_df = evaluate_folder(out_root, data_root, table["series"].tolist())
    return ModelEvaluation(series_df, disc_df, float(table["seconds"].mean()))


def evaluate_every_series(
    model_dir: str | Path, data_root: str | Path, out: str | Path, split: pd.DataFrame
) -> pd.DataFrame:
    """Segment every series of ``split`` (training, validation and test) into ``out`` and
    evaluate them; one row per series with its ``site`` and ``role``."""
    names = split["series"].tolist()
    images = SpiderFolder(Path(data_root)).images_dir
    done = predict_images(model_dir, images, out, series=names, skip_errors=True)
    names = [n for n in names if n in set(done["series"])]
    every, _ = evaluate_folder(out, data_root, names)
    return every.merge(split[["series", "site", "role"]], on="series")


def discs_per_mask(pred_root: str | Path, series: list[str]) -> pd.DataFrame:
    """How many disc labels each predicted mask of ``series`` holds."""
    folder = SpiderFolder(Path(pred_root))
    return pd.DataFrame(
        [
            {
                "series": s,
                "discs in mask": int((np.unique(read_mask(folder.mask_path(s)).array) > 0).sum()),
            }
            for s in series
        ]
    )
