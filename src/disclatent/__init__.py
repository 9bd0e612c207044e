"""disclatent: latent and geometric description of lumbar intervertebral discs.

Modules, one per pipeline concern:

* :mod:`disclatent.data.labels`   SPIDER label values and spinal level names
* :mod:`disclatent.data.volume`       images and masks with spacing, origin and direction
* :mod:`disclatent.data.spider`   SPIDER folder layout, overview and gradings tables
* :mod:`disclatent.data.phantom`  the synthetic cohort of known geometry
* :mod:`disclatent.data.survey`  a first look at a folder of masks
* :mod:`disclatent.profiles` the quick / default / paper settings
* :mod:`disclatent.report.book`     executing the notebooks and building the book
"""

__version__ = "0.1.0"
