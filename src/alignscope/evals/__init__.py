"""Behaviour evaluation: batched generation, refusal detection and rates, capability checks, LLM judge.

:mod:`~alignscope.evals.study` holds the refusal study's typed results (``results.json``).
"""
