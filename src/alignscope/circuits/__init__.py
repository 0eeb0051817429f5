"""Circuit discovery: activation and attribution patching, causal tracing, ablation, circuit graphs.

Import the submodules directly (``alignscope.circuits.patching`` etc.); nothing heavy happens here.
"""
