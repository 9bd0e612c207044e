"""The 3D CNN autoencoder of isolated disc masks (``book/method.md``, *Autoencoder*).

Import the public API from here (``from disclatent import autoencoder as ae``). Submodules,
each importing only those above it:

* :mod:`~disclatent.autoencoder.config`: :class:`AEConfig` (from a profile) and
  :func:`describe_config`;
* :mod:`~disclatent.autoencoder.network`: the network :class:`DiscAutoencoder`,
  :func:`build_model`, :func:`count_parameters`;
* :mod:`~disclatent.autoencoder.objective`: loss, learning-rate schedule,
  :func:`iou_per_disc`;
* :mod:`~disclatent.autoencoder.checkpoint`: the files of a model folder (safetensors and
  JSON, never pickle), :func:`data_digest`;
* :mod:`~disclatent.autoencoder.cubes`: the cubes the model reads: :func:`load_discs` (from
  masks), :func:`discs_from_store` (from a disc store), :func:`fit_cubes`;
* :mod:`~disclatent.autoencoder.training`: :class:`DiscAE` (train, encode, decode, save,
  :meth:`DiscAE.load`) and :func:`fit`;
* :mod:`~disclatent.autoencoder.evaluation`: :func:`evaluate` and :func:`train_or_load`;
* :mod:`~disclatent.autoencoder.ensemble`: :func:`train_many`, several models side by side;
* :mod:`~disclatent.autoencoder.baseline`: :class:`PCABaseline`, the linear shape model;
* :mod:`~disclatent.autoencoder.features`: :class:`LatentFeatures` (scikit-learn);
* :mod:`~disclatent.autoencoder.bottleneck`: :func:`patient_split`, :func:`sweep`, the
  sweep's tables and sentences;
* :mod:`~disclatent.autoencoder.commands`: the ``autoencoder`` command line;
* :mod:`~disclatent.autoencoder.composition`: :class:`IntensityAutoencoder`, shape and T2
  intensity in one code (``book/method.md``, *Composition*).

Figures of the chapter are in :mod:`disclatent.report.autoencoder_plots`.
"""

from disclatent.autoencoder.baseline import PCABaseline
from disclatent.autoencoder.bottleneck import (
    ideas_table,
    main_latent_dim,
    metrics_table,
    patient_split,
    read_split,
    settings_table,
    split_labels,
    split_table,
    split_text,
    summary_text,
    sweep,
    sweep_table,
    timing_table,
    write_split,
)
from disclatent.autoencoder.checkpoint import data_digest
from disclatent.autoencoder.config import AEConfig, describe_config
from disclatent.autoencoder.cubes import CropWarning, Discs, discs_from_store, fit_cubes, load_discs
from disclatent.autoencoder.ensemble import Job, TrainingFailed, train_many
from disclatent.autoencoder.evaluation import evaluate, train_or_load
from disclatent.autoencoder.features import LatentFeatures, decode, encode
from disclatent.autoencoder.network import (
    DiscAutoencoder,
    build_model,
    count_parameters,
    default_device,
)
from disclatent.autoencoder.objective import iou_per_disc
from disclatent.autoencoder.training import DiscAE, fit

__all__ = [
    "AEConfig",
    "CropWarning",
    "DiscAE",
    "DiscAutoencoder",
    "Discs",
    "LatentFeatures",
    "PCABaseline",
    "build_model",
    "count_parameters",
    "data_digest",
    "decode",
    "default_device",
    "describe_config",
    "discs_from_store",
    "encode",
    "evaluate",
    "fit",
    "fit_cubes",
    "iou_per_disc",
    "Job",
    "TrainingFailed",
    "train_many",
    "read_split",
    "split_labels",
    "load_discs",
    "main_latent_dim",
    "metrics_table",
    "patient_split",
    "ideas_table",
    "settings_table",
    "split_table",
    "split_text",
    "summary_text",
    "sweep",
    "sweep_table",
    "timing_table",
    "train_or_load",
    "write_split",
]
