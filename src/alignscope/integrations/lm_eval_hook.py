"""Make the ``lm_eval`` command know model type ``alignscope``, without importing lm-eval at every start-up.

lm-eval 0.4.13 finds models only in its own registry (``lm_eval.models.MODEL_MAPPING``); it reads no entry
points and imports nothing from ``--include_path`` before it builds the model. So the ``lm_eval`` command can
find ``alignscope`` only if something registers it first. ``make install`` writes ``alignscope_lm_eval.pth``
(:data:`PTH_LINE`) into the environment's site-packages; Python runs that line at start-up, and it installs
:class:`_RegistryWatcher`, a ``sys.meta_path`` finder that waits for ``lm_eval.api.registry`` to be imported and
then registers ``alignscope`` as a lazy placeholder (``alignscope.integrations.lm_eval_model:AlignscopeLM``,
imported only when an evaluation asks for it), together with lm-eval's own models. Processes that never
import lm-eval pay for one small stdlib module. The project's ``pyproject.toml`` also declares the
``lm_eval.models`` entry point, for a later lm-eval that reads one.

    python -m alignscope.integrations.lm_eval_hook          # write the .pth into this environment
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

REGISTRY = "lm_eval.api.registry"
TARGET = "alignscope.integrations.lm_eval_model:AlignscopeLM"
PTH_NAME = "alignscope_lm_eval.pth"
PTH_LINE = ("import sys; exec('try:\\n import alignscope.integrations.lm_eval_hook as h; h.install()\\n"
            "except ImportError:\\n pass')\n")


def register(registry: Any) -> None:
    """Register lm-eval's own models and ``alignscope`` (lazily) in ``registry`` (lm-eval's ``model_registry``)."""
    import lm_eval.models  # noqa: F401  (its import registers lm-eval's models; get_model skips it once any is registered)

    if "alignscope" not in registry:
        registry.register("alignscope", target=TARGET)


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader) -> None:
        self.inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.inner.exec_module(module)
        register(module.model_registry)


class _RegistryWatcher(importlib.abc.MetaPathFinder):
    """Wraps the loader of ``lm_eval.api.registry`` so that :func:`register` runs right after it loads."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname != REGISTRY:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _Loader(spec.loader)
                return spec
        return None


def install() -> None:
    """Watch for lm-eval's registry (registers at once when it is already imported)."""
    if REGISTRY in sys.modules:
        register(sys.modules[REGISTRY].model_registry)
        return
    if not any(isinstance(f, _RegistryWatcher) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegistryWatcher())


def write_pth(site_dir: str | Path | None = None) -> Path:
    """Write :data:`PTH_LINE` to ``site_dir/alignscope_lm_eval.pth`` (default: this environment's site-packages)."""
    target = Path(site_dir or sysconfig.get_paths()["purelib"]) / PTH_NAME
    target.write_text(PTH_LINE, encoding="utf-8")
    return target


if __name__ == "__main__":
    sys.stdout.write(f"wrote {write_pth()}\n")
