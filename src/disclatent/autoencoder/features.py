"""Latent features of disc cubes as a scikit-learn transformer (:class:`LatentFeatures`),
and :func:`encode` / :func:`decode` with a model or a model folder.

It lets the prediction protocols train an autoencoder inside each cross-validation fold on
that fold's training discs only, or use one trained model frozen.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from disclatent.autoencoder import training
from disclatent.autoencoder.config import AEConfig
from disclatent.autoencoder.cubes import fit_cubes
from disclatent.autoencoder.training import DiscAE
from disclatent.conventions import latent_columns


class LatentFeatures(BaseEstimator, TransformerMixin):
    """Latent features of disc cubes, as a scikit-learn transformer.

    ``X`` is an array of cubes ``(n, S, S, S)`` or of flattened cubes ``(n, S**3)`` (so it can
    pass through pipelines). ``fit`` trains a new autoencoder on the discs it is given (all of
    them inside a cross-validation fold are training discs), unless ``model_dir`` names a
    trained model, which is then loaded and frozen (``fit`` does not train). ``transform``
    returns ``(n, k)`` latent vectors named ``latent_0 ..``. ``cpu_threads``: torch threads of
    the training (``None``: the profile's; several fits at once need one each).
    """

    def __init__(
        self,
        latent_dim: int = 4,
        profile: str = "default",
        model_dir: str = "",
        max_epochs: int | None = None,
        seed: int = 0,
        device: str | None = None,
        progress: bool = False,
        cpu_threads: int | None = None,
    ) -> None:
        self.latent_dim = latent_dim
        self.profile = profile
        self.model_dir = model_dir
        self.max_epochs = max_epochs
        self.seed = seed
        self.device = device
        self.progress = progress
        self.cpu_threads = cpu_threads

    def fit(self, X: Any, y: Any = None) -> LatentFeatures:  # noqa: N803 (scikit-learn naming)
        if self.model_dir:
            self.model_ = DiscAE.load(self.model_dir, self.device)
        else:
            cfg = AEConfig.from_profile(
                self.profile,
                self.latent_dim,
                max_epochs=self.max_epochs,
                seed=self.seed,
                cpu_threads=self.cpu_threads,
            )
            self.model_ = training.fit(
                fit_cubes(X, cfg.size), cfg, device=self.device, progress=self.progress
            )
        self.n_features_out_ = self.model_.config.latent_dim
        return self

    def transform(self, X: Any) -> np.ndarray:  # noqa: N803
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "model_")
        return self.model_.encode(fit_cubes(X, self.model_.config.size))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.array(latent_columns(self.n_features_out_), dtype=object)


def encode(model: DiscAE | str | os.PathLike, cubes: np.ndarray) -> np.ndarray:
    """Latent vectors of ``cubes`` under a model or a model folder."""
    ae = model if isinstance(model, DiscAE) else DiscAE.load(model)
    return ae.encode(cubes)


def decode(model: DiscAE | str | os.PathLike, z: np.ndarray) -> np.ndarray:
    """Binary cubes decoded from latent vectors ``z`` by a model or a model folder."""
    ae = model if isinstance(model, DiscAE) else DiscAE.load(model)
    return ae.decode(z)
