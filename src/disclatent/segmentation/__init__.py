"""Disc segmentation with MONAI networks, one imaging site held out (``book/method.md``,
*Segmentation*).

Submodules, in the order the data flows:

* :mod:`~disclatent.segmentation.data`: the network grid, intensity normalisation, the
  site split, training patches and augmentation.
* :mod:`~disclatent.segmentation.config`: ``SegConfig`` (one model and its training),
  the profiles' settings.
* :mod:`~disclatent.segmentation.network`: the three networks (U-Net, SegResNet,
  SwinUNETR-V2), the loss, the device, sliding-window logits.
* :mod:`~disclatent.segmentation.training`: the training loop and model folders.
* :mod:`~disclatent.segmentation.inference`: segmenting images with a trained model,
  predicted cohorts in SPIDER format, evaluating them.
* :mod:`~disclatent.segmentation.evaluation`: disc instances, metrics, and Supplementary
  Table 1 beside the paper.
"""
