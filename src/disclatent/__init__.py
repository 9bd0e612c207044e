"""disclatent: latent and geometric description of lumbar intervertebral discs.

Modules, one per pipeline concern:

* :mod:`disclatent.labels`   SPIDER label values and spinal level names
* :mod:`disclatent.io`       images and masks with spacing, origin and direction
* :mod:`disclatent.spider`   SPIDER folder layout, overview and gradings tables
* :mod:`disclatent.phantom`  the synthetic cohort of known geometry
* :mod:`disclatent.inspect`  a first look at a folder of masks
* :mod:`disclatent.profiles` the quick / default / paper settings
* :mod:`disclatent.book`     executing the notebooks and building the book
"""

__version__ = "0.1.0"
