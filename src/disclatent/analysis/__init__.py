"""What the features are worth and what they mean (``book/method.md``, *Prediction* and
*Interpretation*).

* :mod:`~disclatent.analysis.estimators`: XGBoost with the paper's settings in a pipeline
* :mod:`~disclatent.analysis.validation`: patient-grouped repeated CV, metrics, intervals
* :mod:`~disclatent.analysis.prediction`: the experiments of the prediction chapter
* :mod:`~disclatent.analysis.leakage`: the same experiment under the paper's and honest protocols
* :mod:`~disclatent.analysis.baselines`: every feature set against the best trivial baseline
* :mod:`~disclatent.analysis.composition`: Pfirrmann grade and the other targets from
  intensity features, truth recovery
* :mod:`~disclatent.analysis.interpretation`: latent sweeps, correlations, level tests
* :mod:`~disclatent.analysis.study`: the inputs both chapters share, prepared in one call

Imports the layers below it (base, data, discs, segmentation, autoencoder), never report.
"""
