"""Ethical-dilemma analysis: pair schema and loaders, per-pair analysis, aggregation and model comparison.

Import the submodules directly (``alignscope.dilemmas.schema``, ``.analysis``, ``.summary``,
``.moralchoice``); nothing heavy happens here.
"""
