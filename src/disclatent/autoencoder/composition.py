"""An intensity-aware disc autoencoder: shape and composition in one latent code.

(``book/method.md``, *Composition*.) The shape model (:mod:`disclatent.autoencoder.training`)
sees a binary mask. This one sees two channels on the same canonical cube, the mask and the
disc's normalised intensity inside it (:mod:`disclatent.discs.intensity`: image divided by
the series' reference tissue, clipped to ``[0, INTENSITY_CLIP]``, zero outside the disc), and
reconstructs both: channel 0 as mask logits (binary cross-entropy), channel 1 as intensity
(mean squared error over the true disc's voxels, weighted by ``intensity_weight``). The
network is the shape model's (:class:`~disclatent.autoencoder.network.DiscAutoencoder`, two
channels in and out), trained for a fixed number of epochs with Adam (on CUDA when present; the trained model
is kept on the CPU); the profile sets the
cube, channels, batch size and learning rate as for the shape model.

:class:`IntensityAutoencoder` is a scikit-learn transformer: ``fit(X)`` trains on ``X`` of
shape ``(n, 2, S, S, S)`` (:func:`two_channel`), ``transform`` returns ``(n, k)`` latent
vectors, :meth:`~IntensityAutoencoder.reconstruction_error` the held-out mask IoU and
intensity error per disc.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from torch import nn

from disclatent.autoencoder.config import epochs_for_discs
from disclatent.autoencoder.cubes import fit_cubes
from disclatent.autoencoder.network import DiscAutoencoder, default_device
from disclatent.conventions import latent_columns
from disclatent.profiles import get_profile

__all__ = ["INTENSITY_CLIP", "IntensityAutoencoder", "two_channel"]

INTENSITY_CLIP = 2.0  # normalised intensities above twice the reference are clipped


def _centre_crop(x: np.ndarray, size: int) -> np.ndarray:
    side = x.shape[-1]
    if side == size:
        return x
    if side < size or (side - size) % 2:
        raise ValueError(f"cubes of {side}^3 cannot be cropped about their centre to {size}^3")
    m = (side - size) // 2
    return x[..., m : m + size, m : m + size, m : m + size]


def two_channel(masks: np.ndarray, intensities: np.ndarray, size: int | None = None) -> np.ndarray:
    """The model's input ``(n, 2, S, S, S)`` float32: the binary ``masks`` and their
    normalised ``intensities`` inside the disc (NaN and the outside set to 0, clipped to
    ``[0, INTENSITY_CLIP]``), both cropped about the centre to ``size`` when given."""
    masks = np.asarray(masks)
    intensities = np.asarray(intensities, np.float32)
    if masks.shape != intensities.shape:
        raise ValueError(f"masks {masks.shape} and intensities {intensities.shape} differ")
    if size is not None:
        masks = fit_cubes(masks, size)
        intensities = _centre_crop(intensities, size)
    m = (masks > 0).astype(np.float32)
    i = np.clip(np.nan_to_num(intensities, nan=0.0), 0.0, INTENSITY_CLIP) * m
    return np.stack([m, i], axis=1)


class IntensityAutoencoder(BaseEstimator, TransformerMixin):
    """Two-channel (mask, intensity) autoencoder as a scikit-learn transformer (module
    docstring). ``epochs`` of Adam at the profile's learning rate and batch size (fewer on
    more than the profile's ``ae_budget_discs`` discs: the same optimiser steps; ``epochs_``);
    ``cpu_threads``: torch threads (``None``: torch's default)."""

    def __init__(
        self,
        latent_dim: int = 4,
        profile: str = "default",
        epochs: int = 40,
        intensity_weight: float = 4.0,
        seed: int = 0,
        cpu_threads: int | None = None,
        progress: bool = False,
    ) -> None:
        self.progress = progress
        self.latent_dim = latent_dim
        self.profile = profile
        self.epochs = epochs
        self.intensity_weight = intensity_weight
        self.seed = seed
        self.cpu_threads = cpu_threads

    def _network(self, size: int) -> DiscAutoencoder:
        p = get_profile(self.profile)
        return DiscAutoencoder(
            size,
            p.ae_channels,
            self.latent_dim,
            norm="group",
            decoder_kernel=4,
            in_channels=2,
            out_channels=2,
        )

    def _loss(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        mask, inten = x[:, :1], x[:, 1:]
        bce = nn.functional.binary_cross_entropy_with_logits(out[:, :1], mask)
        err = ((out[:, 1:] - inten) ** 2 * mask).sum() / mask.sum().clamp(min=1.0)
        return bce + self.intensity_weight * err

    def fit(self, X: Any, y: Any = None) -> IntensityAutoencoder:  # noqa: N803
        x = torch.as_tensor(np.asarray(X, np.float32))
        if x.ndim != 5 or x.shape[1] != 2:
            raise ValueError(f"expected (n, 2, S, S, S) cubes (two_channel), got {tuple(x.shape)}")
        threads = torch.get_num_threads()
        if self.cpu_threads:
            torch.set_num_threads(int(self.cpu_threads))
        try:
            return self._train(x)
        finally:
            torch.set_num_threads(threads)

    def _train(self, x: torch.Tensor) -> IntensityAutoencoder:
        torch.manual_seed(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        p = get_profile(self.profile)
        device = default_device()
        net = self._network(int(x.shape[-1])).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=p.ae_lr)
        history = []
        net.train()
        from tqdm.auto import tqdm

        desc = f"intensity autoencoder k={self.latent_dim}"
        # the profile's budget is for up to ae_budget_discs discs (epochs_for_discs)
        self.epochs_ = epochs_for_discs(self.epochs, len(x), p.ae_budget_discs)
        for epoch in tqdm(range(self.epochs_), desc=desc, disable=not self.progress):
            total = 0.0
            for idx in torch.randperm(len(x), generator=gen).split(int(p.ae_batch_size)):
                opt.zero_grad()
                batch = x[idx].to(device)
                loss = self._loss(net(batch), batch)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            history.append({"epoch": epoch + 1, "loss": total / max(len(x), 1)})
        net.eval().cpu()
        self.model_, self.history_ = net, pd.DataFrame(history)
        self.n_features_out_ = self.latent_dim
        return self

    @torch.no_grad()
    def transform(self, X: Any) -> np.ndarray:  # noqa: N803
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "model_")
        x = torch.as_tensor(np.asarray(X, np.float32))
        if not len(x):
            return np.zeros((0, self.latent_dim))
        return np.concatenate([self.model_.encode(b).numpy() for b in x.split(16)])

    @torch.no_grad()
    def _decoded(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self.model_.decode(torch.as_tensor(np.asarray(z, np.float32)))
        return (out[:, 0] > 0).numpy(), out[:, 1].clamp(0, INTENSITY_CLIP).numpy()

    def decode(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decoded cubes of latent vectors ``z``: the binary mask (uint8) and the intensity
        inside it (zero outside)."""
        mask, inten = self._decoded(z)
        return mask.astype(np.uint8), inten * mask

    def reconstruction_error(self, X: Any) -> pd.DataFrame:  # noqa: N803
        """Per disc: mask IoU of the reconstruction, and the mean absolute intensity error
        over the true disc's voxels (reference units)."""
        x = np.asarray(X, np.float32)
        mask, inten = self._decoded(self.transform(x))
        true = x[:, 0] > 0
        axes = (1, 2, 3)
        union = np.maximum((true | mask).sum(axis=axes), 1)
        n = np.maximum(true.sum(axis=axes), 1)
        return pd.DataFrame(
            {
                "iou": (true & mask).sum(axis=axes) / union,
                "intensity_mae": (np.abs(inten - x[:, 1]) * true).sum(axis=axes) / n,
            }
        )

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.array(latent_columns(self.n_features_out_), dtype=object)
