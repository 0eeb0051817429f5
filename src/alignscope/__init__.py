"""alignscope: find where alignment behaviour lives inside an open LLM, change it there, prove it.

The package has no import-time side effects; import the submodules you need, e.g.::

    from alignscope.models import load_model
    from alignscope.sites import Site
    from alignscope.activations import capture
"""

__version__ = "0.1.0"
