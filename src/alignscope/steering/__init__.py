"""Steering: directions, their selection, scoped interventions (incl. conditional) and weight edits.

Submodules are imported on use (no import-time side effects); the common entry points are:

* :mod:`~alignscope.steering.directions`: difference-in-means and paired SVD directions.
* :mod:`~alignscope.steering.deltas`: base-vs-instruct per-layer deltas.
* :mod:`~alignscope.steering.direction_io`: ``save_direction`` / ``load_direction``.
* :mod:`~alignscope.steering.interventions`: the intervention protocol, addition, ablation, clamp.
* :mod:`~alignscope.steering.intervention_io`: the file format and its registry of kinds
  (``save_intervention`` / ``load_intervention``).
* :mod:`~alignscope.steering.conditional`: conditional (probe-gated) steering.
* :mod:`~alignscope.steering.selection`: candidate table and selection of a refusal direction.
* :mod:`~alignscope.steering.weight_edit`: orthogonalise weights and save a plain HF directory.
"""
