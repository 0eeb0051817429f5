"""Recipes: searches that fit an intervention by evaluating candidates (above the methods and ``evals``).

* :mod:`alignscope.recipes.conscience`: the selective refusal intervention (conditional steering
  whose strength and gate are chosen by generating on train/val prompts).
"""
