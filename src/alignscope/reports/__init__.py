"""Reports: every file a command writes from typed results (CSV, JSON, PNG plots, self-contained HTML).

* :mod:`~alignscope.reports.html` and :mod:`~alignscope.reports.plots`: the page and plot primitives.
* :mod:`~alignscope.reports.refusal_report`: the refusal study's dashboard.
* :mod:`~alignscope.reports.evals`: a refusal evaluation's files (``alignscope eval``).
* :mod:`~alignscope.reports.circuits` and :mod:`~alignscope.reports.circuit_graph`: ``patch``,
  ``trace`` and ``ablate`` files and circuit graphs.
* :mod:`~alignscope.reports.dilemmas`: the dilemma analysis files and the multi-model table.
* :mod:`~alignscope.reports.lenses`: ``dla``, ``lens`` and ``tuned-lens train|eval`` files.
"""
