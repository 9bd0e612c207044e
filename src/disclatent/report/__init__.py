"""What the reader sees: tables, figures, widgets, the results page and the book build.

* :mod:`~disclatent.report.tables`: every table the book shows, also written as CSV
* :mod:`~disclatent.report.plots`, :mod:`~disclatent.report.segmentation_plots`,
  :mod:`~disclatent.report.interpretation_plots`: figures with physical aspect ratios
* :mod:`~disclatent.report.widgets`: interactive explorers with a static fallback
* :mod:`~disclatent.report.results`: the headline numbers, read back from the tables
* :mod:`~disclatent.report.composition`: the composition chapter's figures and numbers
* :mod:`~disclatent.report.book`, :mod:`~disclatent.report.pages`,
  :mod:`~disclatent.report.vendor`: executing the notebooks, building and checking the book

Imports every layer below it; only :mod:`disclatent.cli` imports it.
"""
