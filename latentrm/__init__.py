"""latentrm: reward models from little preference data via LENS latent-space synthesis."""

from __future__ import annotations

__version__ = "0.1.0"
