"""The bridge's hook points: the one place that looks them up by typed site (or, for internal points, by name).

The TransformerBridge rebuilds its ``hook_dict`` mapping on every access, which costs a walk over
every module, so a caller takes the table once per call with :func:`hook_table` and looks points
up in it with :func:`hook_point`. A missing :class:`~alignscope.sites.Site` raises the site's own
error, which lists the components and layers that exist on this model.

Example:
    >>> table = hook_table(lm)                                      # doctest: +SKIP
    >>> hook_point(lm, table, Site(3, "resid_post"))                # doctest: +SKIP
    HookPointBridge(...)
"""

from __future__ import annotations

import torch

from alignscope.errors import SiteError
from alignscope.models.loader import LoadedModel
from alignscope.sites import Site

HookTable = dict[str, torch.nn.Module]

Point = Site | str
"""Where to hook: a typed :class:`Site`, or the name of a bridge-internal hook point that no site names
(e.g. ``blocks.3.ln1.hook_in``, the input of one sublayer only, which edge attribution reads)."""


def hook_table(lm: LoadedModel) -> HookTable:
    """The bridge's hook points by name; take it once per call (the bridge rebuilds it on every access)."""
    return lm.bridge.hook_dict


def hook_point(lm: LoadedModel, table: HookTable, point: Point) -> torch.nn.Module:
    """The module at ``point``.

    Raises:
        SiteError: the site (or hook name) does not exist on ``lm``; for a site, the message lists the valid ones.
    """
    name = point if isinstance(point, str) else point.hook_name
    if name not in table:
        if isinstance(point, Site):
            point.validate(lm)  # raises the error that names the valid components and layers
        raise SiteError(f"no hook point {name!r} on this model")
    return table[name]
