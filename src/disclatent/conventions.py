"""Conventions every layer shares: the spacing type, the geometric feature names and labels.

Axis orders: a disc cube (and any numpy array this package makes on a patient-aligned grid)
is indexed (SI, AP, LR), index growing towards superior, posterior and left. ITK and
SimpleITK speak (x, y, z) = (LR, AP, SI) for a sagittal series in LPS. :class:`Spacing`
names the three values so that neither order is ever guessed. The full list of conventions
(labels, world coordinates, units, figure orientation) is in ``book/method.md``,
*Conventions*.
"""

from __future__ import annotations

from typing import NamedTuple

from disclatent import published


class Spacing(NamedTuple):
    """Voxel spacing in millimetres, one value per anatomical axis.

    As a tuple it is in numpy cube order ``(si, ap, lr)``; :attr:`xyz` gives ITK's order.
    """

    si: float
    ap: float
    lr: float

    @property
    def xyz(self) -> tuple[float, float, float]:
        """``(lr, ap, si)``: ITK/SimpleITK ``(x, y, z)`` order of an LPS-aligned image."""
        return (self.lr, self.ap, self.si)

    @classmethod
    def from_xyz(cls, xyz: tuple[float, float, float]) -> Spacing:
        """From ITK/SimpleITK ``(x, y, z)`` order, i.e. ``(lr, ap, si)``."""
        lr, ap, si = (float(v) for v in xyz)
        return cls(si=si, ap=ap, lr=lr)


#: the published resampling grid (1.4 x 1.2 x 1.5 mm read as LR x AP x SI)
PAPER_SPACING = Spacing(**published.SPACING_MM)

#: the features measured on every disc (mm, degrees, mm^3), in the order tables show them
GEOMETRY_FEATURES = [
    "height_mm",
    "ap_width_mm",
    "lateral_width_mm",
    "sagittal_angle_deg",
    "coronal_angle_deg",
    "transverse_angle_deg",
    "volume_mm3",
]
#: the paper's geometric feature set for prediction: the six above without the volume
PREDICTION_FEATURES = [f for f in GEOMETRY_FEATURES if f != "volume_mm3"]
#: columns that name a disc in every table
ID_COLUMNS = ["series", "patient", "ivd_label", "level"]
FEATURE_LABELS = {
    "height_mm": "height (mm)",
    "ap_width_mm": "AP width (mm)",
    "lateral_width_mm": "lateral width (mm)",
    "sagittal_angle_deg": "sagittal angle (deg)",
    "coronal_angle_deg": "coronal angle (deg)",
    "transverse_angle_deg": "transverse angle (deg)",
    "volume_mm3": "volume (mm³)",
}


def latent_columns(latent_dim: int, prefix: str = "latent_") -> list[str]:
    """``latent_0 .. latent_{k-1}``: the column names of a k-number latent code."""
    return [f"{prefix}{i}" for i in range(latent_dim)]
