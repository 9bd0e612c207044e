"""The study's explorers as a local web app (``make explore``; Voila).

:func:`~disclatent.app.explore.build_app` assembles the three explorers from the outputs of
the last ``make book``; :func:`~disclatent.app.serve.serve` serves them on 127.0.0.1.
"""
