"""Frames of the phantom's discs: the generating rotation from the three tilts, the angles
a frame shows in the scanner planes, and the principal frame of a disc's solid (its truth).
Conventions: :mod:`disclatent.data.phantom` (module docstring)."""

from __future__ import annotations

import math

import numpy as np


def rotation_matrix(sagittal_deg: float, coronal_deg: float, transverse_deg: float) -> np.ndarray:
    """Disc frame (columns u, v, w) in LPS for the three tilts (see module docstring)."""
    a, b, g = np.deg2rad([sagittal_deg, coronal_deg, transverse_deg])

    def rx(t: float) -> np.ndarray:
        c, s = math.cos(t), math.sin(t)
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])

    def ry(t: float) -> np.ndarray:
        c, s = math.cos(t), math.sin(t)
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])

    def rz(t: float) -> np.ndarray:
        c, s = math.cos(t), math.sin(t)
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])

    return rz(g) @ ry(-b) @ rx(-a)


def plane_angles(rotation: np.ndarray) -> dict[str, float]:
    """Disc tilt in the sagittal, coronal and transverse scanner planes (degrees).

    Sagittal and coronal: the line where the disc's mid-plane cuts that plane. Transverse:
    the disc's lateral axis projected on the plane. Signs as in the module docstring.
    """
    n = rotation[:, 2]
    ex, ey, ez = np.eye(3)

    def angle(d: np.ndarray, ref: np.ndarray, up: np.ndarray) -> float:
        if np.dot(d, ref) < 0:
            d = -d
        return float(np.degrees(np.arctan2(np.dot(d, up), np.dot(d, ref))))

    return {
        # sagittal plane (y-z): the line lies along ex x n; reference anterior = -y
        "sagittal_angle_deg": angle(np.cross(ex, n), -ey, ez),
        # coronal plane (x-z): line along ey x n; reference left = +x, up = +z
        "coronal_angle_deg": angle(np.cross(ey, n), ex, ez),
        # transverse plane (x-y): a transverse slice shows the whole footprint, whose long
        # axis is the lateral axis u projected on x-y; reference left = +x, "up" = posterior
        "transverse_angle_deg": angle(rotation[:, 0] * np.array([1.0, 1.0, 0.0]), ex, ey),
    }


def principal_turn(
    rotation: np.ndarray, uu: np.ndarray, vv: np.ndarray, weight: np.ndarray
) -> np.ndarray:
    """The principal frame of a disc solid placed by ``rotation``, in the solid's own
    ``(u, v, w)`` coordinates: a rotation about ``w`` (columns: lateral, AP, normal axis).

    The solid is symmetric about its mid-plane (``|w| <= t / 2``), so ``w`` is a
    principal axis and the disc normal; in the mid-plane, the principal axes of the
    second moments of the thickness ``weight`` sampled at ``(uu, vv)`` (mm). Of the two,
    the one closer to the world's left-right axis is the lateral axis, as for a measured
    disc (``book/method.md``, *Geometry*). An irregular outline (odd harmonics, sine
    terms) or wavy endplates turn these axes away from ``u`` and ``v`` of the generating
    rotation: for near-round footprints by several degrees.
    """
    total = weight.sum()
    cu = uu - (uu * weight).sum() / total
    cv = vv - (vv * weight).sum() / total
    suu, svv = (weight * cu * cu).sum() / total, (weight * cv * cv).sum() / total
    suv = (weight * cu * cv).sum() / total
    major = 0.5 * math.atan2(2.0 * suv, suu - svv)
    turns = []
    for phi in (major, major + 0.5 * math.pi):
        c, s = math.cos(phi), math.sin(phi)
        turns.append(np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]))
    best = max(turns, key=lambda t: abs((rotation @ t[:, 0])[0]))  # first one on a tie
    if (rotation @ best[:, 0])[0] < 0:  # towards the left, v = w x u
        best = best @ np.diag([-1.0, -1.0, 1.0])
    return best
