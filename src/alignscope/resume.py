"""Resumable output directories: one rule for whether what is on disk may be continued.

A run that writes into a directory as it goes (a capture's finished batches, tuned-lens
checkpoints, a pipeline's stage records) stores a *fingerprint*: the hash of everything its
output depends on, the model's :func:`~alignscope.models.identity.model_identity` key included.
On a rerun the stored fingerprint is compared with the new one by :func:`same_run`:

* nothing stored: start fresh;
* the same fingerprint: continue from what is there;
* a different one: ``raise`` a :class:`~alignscope.errors.ResumeMismatchError` naming the
  directory (capture, tuned lens: one output per directory), or ``redo`` the part (pipeline
  stages, whose checkpoints are invalidated one by one).

:func:`claim` keeps the fingerprint in a ``fingerprint.json`` marker written atomically.

Example:
    >>> claim(tmp_path, "abc", what="a capture", inputs="prompts")
    False
    >>> claim(tmp_path, "abc", what="a capture", inputs="prompts")
    True
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

from alignscope.errors import ResumeMismatchError
from alignscope.io import atomic_write_json

log = logging.getLogger(__name__)

MARKER_FILE = "fingerprint.json"


def same_run(found: str | None, expected: str, *, where: str | Path, what: str, inputs: str,
             on_mismatch: Literal["raise", "redo"] = "raise") -> bool:
    """Whether the output at ``where``, stored with fingerprint ``found``, continues the run ``expected``.

    Args:
        found: the stored fingerprint (None: nothing stored yet, start fresh).
        expected: the fingerprint of the run asked for now.
        where: the directory or file the fingerprint came from (named in the error).
        what: what is stored there, for messages (``an unfinished capture``).
        inputs: what the fingerprint covers, for messages (``model weights, prompts or settings``).
        on_mismatch: ``raise`` a :class:`ResumeMismatchError`, or ``redo`` (log it and return False).

    Returns:
        True to resume, False to start (or redo) from scratch.
    """
    if found is None:
        return False
    if found == expected:
        return True
    if on_mismatch == "redo":
        log.info("%s holds %s of different inputs (%s); recomputing", where, what, inputs)
        return False
    raise ResumeMismatchError(f"{where} holds {what} of different inputs ({inputs} differ); "
                              "choose another --out or delete it")


def read_marker(directory: str | Path) -> str | None:
    """The fingerprint stored in ``directory/fingerprint.json`` (None when there is none or it is unreadable)."""
    marker = Path(directory) / MARKER_FILE
    try:
        found = json.loads(marker.read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return None
    return found if isinstance(found, str) else None


def claim(directory: str | Path, expected: str, *, what: str, inputs: str) -> bool:
    """Mark ``directory`` as holding the run ``expected``; True when it already did (resume).

    Writes ``fingerprint.json`` atomically when absent; raises :class:`ResumeMismatchError`
    when it names another run (see :func:`same_run`).
    """
    if same_run(read_marker(directory), expected, where=directory, what=what, inputs=inputs):
        return True
    atomic_write_json(Path(directory) / MARKER_FILE, {"fingerprint": expected})
    return False
