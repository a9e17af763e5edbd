"""Recipes: glue that strings the stages together, and no math of its own.

:mod:`~latentrm.recipes.prepare` (load, split, embed once), :mod:`~latentrm.recipes.run`
(`latentrm run`: every method on one split), :mod:`~latentrm.recipes.experiment` (methods x
ratios x seeds x a swept key), :mod:`~latentrm.recipes.report` and
:mod:`~latentrm.recipes.plots` (tables, paired differences, REPORT.md sections, figures),
:mod:`~latentrm.recipes.embed` (`latentrm embed` with any engine; filling caches),
:mod:`~latentrm.recipes.stepwise` (`latentrm synth` / `latentrm train` on a cache) and
:mod:`~latentrm.recipes.score` (`latentrm score` / `latentrm bon` over rows).
The CLI calls these; recipes call the stages; stages never call recipes.
"""
