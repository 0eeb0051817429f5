"""The hooks layer: how alignscope touches activations (below every method package).

* :mod:`alignscope.hooks.read`: the one read primitive (typed sites in, activations out).
* :mod:`alignscope.hooks.backends`: where write hooks go (the bridge's hook points or the
  native twin's modules) and the one place that chooses between them.
* :mod:`alignscope.hooks.writes`: the hook signature and how a write at a site reaches the
  residual stream.
* :mod:`alignscope.hooks.handle`: the one handle type for attached hooks.
* :mod:`alignscope.hooks.numerics`: the inf/NaN guard every forward pass runs, naming the first
  non-finite site.
"""
