"""Errors that name the place in the data where something is wrong.

An analyst fixing a bad file needs the file, the column and the row (or unit), not a
traceback; every ingest problem is raised as a DataValidationError carrying those.
"""

from __future__ import annotations


class PdmlensError(Exception):
    """Base class of every error pdmlens raises on purpose."""


class DataValidationError(PdmlensError):
    """Bad input data, located by file, column and row/unit where known."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        column: str | None = None,
        row: int | None = None,
        unit: str | None = None,
    ) -> None:
        self.reason = message
        self.file = file
        self.column = column
        self.row = row
        self.unit = unit
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.file is not None:
            where.append(f"file {self.file}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.unit is not None:
            where.append(f"unit '{self.unit}'")
        return f"{', '.join(where)}: {self.reason}" if where else self.reason


class ConfigError(PdmlensError, ValueError):
    """A run configuration that cannot be used: unreadable YAML, an unknown key, a value
    out of range. The message names the file (and line) or the key."""


class NotFittedError(PdmlensError, ValueError):
    """An estimator was used before `fit`."""


class TrackingUnavailableError(PdmlensError):
    """The MLflow tracking store cannot be reached or written (checked before a run)."""
