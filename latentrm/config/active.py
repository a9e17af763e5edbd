"""Config section of the active-selection study (``active:``, `latentrm active`)."""

from __future__ import annotations

from dataclasses import dataclass

from latentrm.config.stages import opt


@dataclass(frozen=True)
class ActiveConfig:
    """Active selection study: labels bought in rounds from a pool whose labels are hidden."""

    strategies: tuple[str, ...] = opt(
        ("random", "bald", "entropy", "diversity", "hybrid"),
        "Acquisition strategies compared (latentrm.head.acquire.STRATEGIES); 'random' is the "
        "baseline every other is paired with.",
    )
    start: int = opt(
        50, "Random labels bought before the first round (the same for every strategy of a split)."
    )
    step: int = opt(50, "Labels bought per round (the batch size K).")
    budget: int = opt(500, "Labels at the last round (start + rounds * step).")
    methods: tuple[str, ...] = opt(
        (),
        "Methods or variants (as in `methods`) also trained on each strategy's labels at "
        "`methods_at` labels and measured on the held-out pairs: do synthesis or ensembles add "
        "anything to actively chosen labels? () = none.",
    )
    methods_at: int | None = opt(
        None,
        "The label count (one of start + i * step) at which `methods` are trained; None = "
        "the budget.",
    )
    top_m: int | None = opt(
        None,
        "Hybrid: candidates (most uncertain pairs) the k-center step chooses among; "
        "None = 4 * step.",
    )
