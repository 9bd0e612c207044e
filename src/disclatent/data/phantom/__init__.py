"""A synthetic lumbar-spine cohort in SPIDER's exact file format, with known geometry.

Every disc is an analytic solid defined in its own frame ``(u, v, w)`` in millimetres:

* ``u`` lateral (towards the patient's left), ``v`` antero-posterior (towards posterior),
  ``w`` along the disc axis (towards superior).
* Footprint in the ``(u, v)`` plane: two half-ellipses (anterior semi-axis ``a_ant``,
  posterior ``a_post``, lateral ``a_lat``) minus an elliptic notch at the posterior midline
  (the kidney shape's posterior concavity, depth ``notch_depth``).
* Thickness ``t(u, v) = h0 * (1 - convexity * r^2) * (1 - wedge * v / a_mean)`` where ``r`` is
  the normalised elliptic radius: convex endplates (thicker centre) and a wedge (taller
  anteriorly). The disc is ``|w| <= t(u, v) / 2``.

The disc frame is placed in LPS world coordinates by ``R = Rz(transverse) Ry(-coronal)
Rx(-sagittal)``. The true values in ``phantom_truth.csv`` follow the paper's definitions:

* ``height_mm``: mean of ``t`` over the footprint (mean thickness along the disc's own axis).
* The solid's principal frame, as a measured disc's is defined: its normal is ``w`` (the
  solid is symmetric about its mid-plane); its lateral and AP axes are the principal axes of
  the footprint's thickness-weighted second moments, the lateral one closer to left-right.
  For a regular footprint they are ``u`` and ``v``; an irregular outline or wavy endplates
  turn them, for the near-round footprints of real discs by several degrees
  (:meth:`~disclatent.data.phantom.anatomy.DiscSpec.principal_rotation`).
* ``ap_width_mm``: footprint extent along the AP axis on the line through the centroid
  (the middle sagittal slice; ``a_ant + a_post - notch_depth`` for a regular footprint).
* ``lateral_width_mm``: footprint extent along the lateral axis through the centroid
  (``2 a_lat`` for a regular footprint).
* ``volume_mm3``: integral of ``t`` over the footprint; ``centroid_{x,y,z}_mm``: its centre
  of mass in LPS world millimetres.
* Angles, in degrees, of the line where the disc's mid-plane cuts a scanner plane:
  ``sagittal_angle_deg`` (y-z plane) against the anterior horizontal, positive when the
  anterior edge is superior (L5/S1 is negative in lordosis); ``coronal_angle_deg`` (x-z
  plane) against the left-right axis, positive when the left edge is superior;
  ``transverse_angle_deg`` (x-y plane): the principal lateral axis projected on the transverse
  plane against the left-right axis, positive when the left edge is posterior (the mid-plane
  of a near-horizontal disc does not cut a transverse plane along a line). The paper
  measures the last two "against the vertical axis": that is 90 degrees minus these
  deviations; deviations from neutral are easier to read.

Pathology: each disc has a narrowing severity and a bulge severity, correlated through a
patient-level degeneration factor and more common at lower levels. Narrowing scales the disc
height (``narrowing_factor``); bulging pushes the footprint past the vertebral rim, mostly
posteriorly (``bulge_mm``). The gradings are drawn from the same severities with grader noise,
so that no geometric feature predicts them perfectly. Pfirrmann grade follows the
degeneration and sets the T2 signal of the nucleus.

Modules: :mod:`~disclatent.data.phantom.anatomy` (the generating specification: calibration,
sites, each disc's solid and its truth), :mod:`~disclatent.data.phantom.frames` (rotations,
scanner-plane angles, a solid's principal frame), :mod:`~disclatent.data.phantom.raster` (label map
and MR image on an acquisition grid) and :mod:`~disclatent.data.phantom.writer` (the cohort's
files). Method: ``book/method.md``, *Data*.
"""

from disclatent.data.phantom.anatomy import (
    GENERATING_FACTORS,
    SITES,
    DiscSpec,
    PatientSpec,
    Site,
    make_patient,
    plane_angles,
    rotation_matrix,
)
from disclatent.data.phantom.raster import Grid, rasterise, synthesise_image
from disclatent.data.phantom.writer import (
    PHANTOM_VERSION,
    TRUTH_FILE,
    has_truth,
    phantom_is_current,
    read_truth,
    tree_digest,
    write_phantom,
)

__all__ = [
    "GENERATING_FACTORS",
    "PHANTOM_VERSION",
    "SITES",
    "TRUTH_FILE",
    "DiscSpec",
    "Grid",
    "PatientSpec",
    "Site",
    "has_truth",
    "make_patient",
    "phantom_is_current",
    "plane_angles",
    "rasterise",
    "read_truth",
    "rotation_matrix",
    "synthesise_image",
    "tree_digest",
    "write_phantom",
]
