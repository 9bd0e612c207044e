"""One disc at a time: isolation and geometry (``book/method.md``, *Geometry*).

* :mod:`~disclatent.discs.isolation`: a disc cut out of its mask into a patient-aligned
  cube, numpy axes (SI, AP, LR), resampled by nearest neighbour
* :mod:`~disclatent.discs.store`: a cohort's isolated discs in one ``.npz`` file
* :mod:`~disclatent.discs.geometry`: height, widths, angles and volume in mm and degrees
* :mod:`~disclatent.discs.features`: every disc of a cohort measured, joined to its gradings
* :mod:`~disclatent.discs.validation`: the measurements checked against the phantom's truth,
  the paper's slice method and scikit-image
* :mod:`~disclatent.discs.intensity`: the image on each disc's cube, normalised by the
  spinal canal (``book/method.md``, *Composition*)
* :mod:`~disclatent.discs.composition`: hand-crafted nucleus and annulus signal measures

Imports the base modules and :mod:`disclatent.data`.
"""
