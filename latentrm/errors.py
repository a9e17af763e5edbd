"""User-facing errors. The CLI prints these as one line (no traceback unless --debug)."""

from __future__ import annotations


class LatentrmError(Exception):
    """Base class for mistakes a user can fix: bad input files, configs, caches, arguments."""


class ConfigError(LatentrmError, ValueError):
    """An invalid config key or value."""


class DataError(LatentrmError, ValueError):
    """Malformed preference data. The message names the file, line (1-based) and field."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        where = ":".join(str(x) for x in (path, line) if x is not None)
        prefix = f"{where}: " if where else ""
        suffix = f" (field '{field}')" if field else ""
        super().__init__(f"{prefix}{message}{suffix}")
        self.path, self.line, self.field = path, line, field


class CacheError(LatentrmError):
    """An embedding cache that does not match the request, or is corrupt."""


class TrainingError(LatentrmError):
    """Training diverged (NaN/Inf loss) or cannot proceed."""


class ModelError(ConfigError):
    """A reward model that cannot be used: corrupt or inconsistent files, the wrong embedder,
    non-finite weights or scores. The message names the file (and tensor or field)."""
