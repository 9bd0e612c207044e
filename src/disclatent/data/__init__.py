"""The data layer: SPIDER-format cohorts, real or phantom (``book/method.md``, *Data*).

* :mod:`~disclatent.data.labels`: SPIDER label values, IVD labels and spinal level names
* :mod:`~disclatent.data.volume`: images and masks with spacing, origin and direction (LPS)
* :mod:`~disclatent.data.spider`: the folder layout, overview and gradings, the disc table
* :mod:`~disclatent.data.phantom`: the synthetic cohort of known geometry
* :mod:`~disclatent.data.cohort`: the folder a run reads (given, or the profile's phantom)
* :mod:`~disclatent.data.download`: the checksummed SPIDER download
* :mod:`~disclatent.data.survey`: a first look at a mask or a folder of masks

Imports only the base modules.
"""
