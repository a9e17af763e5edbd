"""The estimator contract of every stage that learns (scikit-learn's, trimmed to what we use).

- ``__init__`` stores hyperparameters only, each under its own argument name, and validates
  nothing that needs data; randomness arrives as ``seed``.
- ``fit(...)`` learns from data and returns ``self``; learned state is every attribute whose name
  ends in ``_`` (``vae_``, ``head_``, ``history_``), so it is easy to see and to carry over.
- ``get_params()`` / ``set_params(**p)`` read and change hyperparameters. Changing a
  hyperparameter that ``fit`` does not use (LENS's ``synth_cfg``, the noise of a sampler) keeps the
  learned state valid: ``copy.copy(fitted).set_params(synth_cfg=...)`` samples anew without
  refitting.
"""

from __future__ import annotations

import inspect
from typing import Any, TypeVar

from latentrm.errors import ConfigError

E = TypeVar("E", bound="Estimator")


class Estimator:
    """Mixin giving ``get_params`` / ``set_params`` from the ``__init__`` signature."""

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [n for n, p in sig.parameters.items()
                if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters by name, as given to ``__init__``."""
        return {n: getattr(self, n) for n in self._param_names()}

    def set_params(self: E, **params: Any) -> E:
        """Change hyperparameters in place (learned state is kept); returns self."""
        names = self._param_names()
        for name, value in params.items():
            if name not in names:
                raise ConfigError(
                    f"{type(self).__name__} has no hyperparameter {name!r} (it has {names})"
                )
            setattr(self, name, value)
        return self
