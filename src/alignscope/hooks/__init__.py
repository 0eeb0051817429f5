"""The hooks layer: how alignscope touches activations (below every method package).

* :mod:`alignscope.hooks.writes`: the hook signature and how a write at a site reaches the
  residual stream.
"""
