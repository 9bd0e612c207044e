"""disclatent: latent and geometric description of lumbar intervertebral discs.

The method is described in ``book/method.md``. Data flows one way through the package; a
module imports its own layer and the layers before it, never a later one::

    base -> data -> discs -> segmentation | autoencoder -> analysis -> report -> cli

* base modules: :mod:`~disclatent.published` (every number the paper reports, its settings),
  :mod:`~disclatent.conventions` (axis orders, :class:`~disclatent.conventions.Spacing`,
  feature names), :mod:`~disclatent.paths` (every output under the build folder),
  :mod:`~disclatent.formatting`, :mod:`~disclatent.stats`, :mod:`~disclatent.profiles`,
  :mod:`~disclatent.accel` (the device, mixed precision, cuDNN determinism)
* :mod:`disclatent.data`: SPIDER folders, volumes with their header geometry, the phantom
* :mod:`disclatent.discs`: disc isolation into cubes, geometry in millimetres and degrees
* :mod:`disclatent.segmentation`: MONAI disc segmentation with one site held out
* :mod:`disclatent.autoencoder`: the 3D CNN autoencoder of disc masks and its baseline
* :mod:`disclatent.analysis`: prediction of gradings, interpretation of the latent space
* :mod:`disclatent.report`: tables, figures, widgets, the results page, the book build
* :mod:`disclatent.cli`: the command line, ``python -m disclatent``
"""

__version__ = "0.1.0"
