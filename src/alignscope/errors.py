"""Errors that alignscope raises on purpose, so that the CLI can show them without a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


class AlignscopeError(Exception):
    """Base class for every error alignscope raises deliberately."""


class InputError(AlignscopeError, ValueError):
    """Bad user input: a file, a field or an argument that does not fit what was expected.

    The message names where the problem is (file, line, field) and what was expected.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        where = []
        if path is not None:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field {field!r}")
        prefix = ", ".join(where)
        if "\n" in message or "\r" in message:  # one line: a multi-line message (YAML's, a token listing) is folded
            message = "; ".join(line.strip() for line in message.splitlines() if line.strip())
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.path = None if path is None else str(path)
        self.line = line
        self.field = field


class SiteError(AlignscopeError, KeyError):
    """An unknown or out-of-range model site. The message lists the valid ones."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly instead.
        return str(self.args[0]) if self.args else ""


class NumericalError(AlignscopeError):
    """Non-finite values (inf/NaN) where results would be computed; the message names the layer and site.

    Attributes:
        site: the first site whose output was not finite (an :class:`alignscope.sites.Site`), or None.
    """

    def __init__(self, message: str, *, site: object | None = None) -> None:
        super().__init__(message)
        self.site = site


class DiskFullError(AlignscopeError, OSError):
    """A file could not be written because its file system is full (or the user's quota is spent).

    The message names the file; the file's previous version, if any, is untouched (writes are atomic),
    so finished stages and checkpoints survive and a rerun after freeing space resumes. It is also
    an ``OSError``, so code that falls back on a failed write (another log location) still does.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__(f"{path}: could not write this file: the disk is full (no space left on device); free some space "
                         "and rerun: finished stages and checkpoints are kept")
        self.path = str(path)


class ResumeMismatchError(AlignscopeError):
    """An output directory holds a run made with different inputs than the ones given now."""


_STAGE_ATTR = "alignscope_stage"


@contextmanager
def in_stage(name: str) -> Iterator[None]:
    """Mark the stage an exception escaped from, so the CLI's one-line error can name it."""
    try:
        yield
    except Exception as exc:
        if getattr(exc, _STAGE_ATTR, None) is None:
            with suppress(AttributeError, TypeError):  # an exception type without a __dict__ keeps no stage
                setattr(exc, _STAGE_ATTR, name)
        raise


def stage_of(exc: BaseException) -> str | None:
    """The innermost stage ``exc`` escaped from (see :func:`in_stage`), or None."""
    stage = getattr(exc, _STAGE_ATTR, None)
    return stage if isinstance(stage, str) else None
