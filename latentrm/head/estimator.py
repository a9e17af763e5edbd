"""The estimator contract of every stage that learns (scikit-learn's, trimmed to what we use).

- ``__init__`` stores hyperparameters only, each under its own argument name, and validates
  nothing that needs data; randomness arrives as ``seed``.
- ``fit(...)`` learns from data and returns ``self``; learned state is every attribute whose name
  ends in ``_`` (``vae_``, ``head_``, ``history_``), so it is easy to see and to carry over.
- ``get_params()`` / ``set_params(**p)`` read and change hyperparameters. Changing a
  hyperparameter that ``fit`` does not use (LENS's ``synth_cfg``, the noise of a sampler) keeps the
  learned state valid: ``copy.copy(fitted).set_params(synth_cfg=...)`` samples anew without
  refitting.
- ``fit_params`` names the hyperparameters ``fit`` depends on (None: all of them), so
  ``fit_key()`` tells when two estimators would learn the same state from the same data and one
  fit can serve both (:class:`FitMemo`).
"""

from __future__ import annotations

import copy
import inspect
import time
from typing import Any, TypeVar

from latentrm.errors import ConfigError

E = TypeVar("E", bound="Estimator")


class Estimator:
    """Mixin giving ``get_params`` / ``set_params`` from the ``__init__`` signature."""

    fit_params: tuple[str, ...] | None = None

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            n
            for n, p in sig.parameters.items()
            if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

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

    def fit_key(self) -> str:
        """What `fit` depends on besides the data: its class and its fit_params' values."""
        names = self._param_names() if self.fit_params is None else self.fit_params
        parts = []
        for name in names:
            value = getattr(self, name)
            parts.append(f"{name}={value.fit_key() if isinstance(value, Estimator) else value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


class FitMemo:
    """Fitted estimators by (fit_key, data key): an equal fit on the same data is done once.

    ``fit(est, data_key, *args)`` returns `est` fitted on `args`, or a copy of an earlier fit with
    `est`'s hyperparameters set on it (valid because they differ only in what fit() ignores).
    Several method variants that share a VAE (LENS with other pairing, decoding or teachers) then
    train it once per split.
    """

    def __init__(self) -> None:
        self._fitted: dict[tuple[str, str], tuple[Any, float]] = {}
        self.seconds = 0.0  # how long the fit behind the last answer took (when it was made)

    def fit(self, est: Any, data_key: str, *args: Any) -> Any:
        key = (est.fit_key() if isinstance(est, Estimator) else repr(est), data_key)
        if key not in self._fitted:
            t0 = time.perf_counter()
            fitted = est.fit(*args)
            self._fitted[key] = (fitted, time.perf_counter() - t0)
            self.seconds = self._fitted[key][1]
            return fitted
        fitted, self.seconds = self._fitted[key]
        return copy.copy(fitted).set_params(**est.get_params())
