"""The linear baseline: :class:`PCABaseline`, the classical statistical shape model.

PCA of the flattened binary masks with the same number of components as the autoencoder's
bottleneck, reconstruction thresholded at 0.5 (``book/method.md``, *Autoencoder*).
"""

from __future__ import annotations

import numpy as np

from disclatent.autoencoder.objective import iou_per_disc


class PCABaseline:
    """PCA of the flattened binary masks with ``k`` components (a linear shape model).

    ``reconstruct`` projects onto the components, maps back and thresholds at 0.5. ``k`` is
    capped at the number of training discs minus one (PCA has no more components).
    """

    def __init__(self, latent_dim: int, seed: int = 0) -> None:
        self.latent_dim = latent_dim
        self.seed = seed

    def fit(self, cubes: np.ndarray) -> PCABaseline:
        from sklearn.decomposition import PCA

        x = np.asarray(cubes, np.float32).reshape(len(cubes), -1)
        self.shape_ = np.asarray(cubes).shape[1:]
        self.n_components_ = int(min(self.latent_dim, max(len(x) - 1, 1)))
        self.pca_ = PCA(
            n_components=self.n_components_, svd_solver="full", random_state=self.seed
        ).fit(x)
        return self

    def transform(self, cubes: np.ndarray) -> np.ndarray:
        """Cubes (n, S, S, S) -> component scores (n, k)."""
        return self.pca_.transform(np.asarray(cubes, np.float32).reshape(len(cubes), -1))

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        """Component scores (n, k) -> binary cubes (threshold 0.5), uint8."""
        x = self.pca_.inverse_transform(np.asarray(z, np.float32))
        return (x.reshape(-1, *self.shape_) > 0.5).astype(np.uint8)

    def reconstruct(self, cubes: np.ndarray) -> np.ndarray:
        return self.inverse_transform(self.transform(cubes))

    def iou(self, cubes: np.ndarray) -> np.ndarray:
        """Per-disc IoU of the reconstruction with the input."""
        return iou_per_disc(self.reconstruct(cubes), cubes)
