"""latentrm.config.bounds: the table of choices beside the bounds table, the rules between keys,
and the upper bounds that keep a small config from costing a lot (issue 22 item 3, issue 23
items 2 and 4). Every check runs when the config is built, so `latentrm config` and `run` refuse
before any data is read or embedded."""

from __future__ import annotations

import re

import pytest

from latentrm.config import load_config
from latentrm.errors import ConfigError

CHOICE_CASES = [
    ("vae.recon", "l1", "mse | cosine"),
    ("vae.recon_reduction", "max", "sum | mean"),
    ("vae.divergence", "kl", "w2 | w2_squared"),
    ("synth.method", "vae", "none | direct | gaussian | lens | cross-prompt"),
    ("synth.likelihood", "max", "prior | posterior | recon"),
    ("synth.pairing", "crosss", "within_seed | cross"),
    ("synth.noise_on", "both", "mean | sample"),
    ("synth.decode", "resid", "plain | residual"),
    ("synth.teacher", "filtre", "none | filter | relabel"),
    ("synth.gaussian_cov", "dense", "diag | full"),
    ("embed.pooling", "max", "auto | last | mean"),
    ("embed.text_format", "html", "auto | chat | plain"),
    ("embed.dtype", "float8", "auto | float32 | bfloat16 | float16"),
    ("data.format", "csv", "auto | hh | trl | tldr | candidates | labelled"),
    ("text.text_format", "html", "auto | chat | plain"),
    ("self_rewarding.train_mode", "qlora", "full | lora"),
    ("self_rewarding.text_format", "html", "auto | chat | plain"),
]


@pytest.mark.parametrize(("key", "bad", "allowed"), CHOICE_CASES, ids=[c[0] for c in CHOICE_CASES])
def test_every_choice_is_checked_when_the_config_is_built(key: str, bad: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, [f"{key}={bad}"])
    assert str(e.value) == f"{key} must be one of {allowed}, got '{bad}'"


def test_choices_of_a_tuple_key_and_of_a_device() -> None:
    with pytest.raises(
        ConfigError,
        match=r"^text_baselines must be one of full \| lora \| "
        r"self-rewarding, got 'qlora' in \['full', 'qlora'\]$",
    ):
        load_config(None, ["text_baselines=[full, qlora]"])
    for key in ("embed.device", "text.device", "self_rewarding.device"):
        with pytest.raises(
            ConfigError,
            match=rf"^{re.escape(key)} must be auto, cpu, mps, cuda "
            r"or cuda:N, got 'gpu'$",
        ):
            load_config(None, [f"{key}=gpu"])
    cfg = load_config(None, ["embed.device=cuda:1", "text.device=cpu", "self_rewarding.device=mps"])
    assert (cfg.embed.device, cfg.text.device) == ("cuda:1", "cpu")


def test_a_section_built_alone_or_directly_is_checked_too() -> None:
    """The stage dataclasses check themselves when built, so a late check in the method cannot
    be the first to see a bad choice (the Python API builds them directly)."""
    from latentrm.config import SynthConfig, VAEConfig

    with pytest.raises(ConfigError, match=r"^vae\.recon must be one of mse \| cosine, got 'l1'$"):
        VAEConfig(recon="l1")
    with pytest.raises(ConfigError, match=r"^synth\.top_k=20 must be <= synth\.n_candidates=16"):
        SynthConfig(top_k=20)


def test_the_table_is_the_one_source_of_the_methods_choices() -> None:
    from latentrm.augment import synth, teacher, vae
    from latentrm.config.bounds import CHOICES
    from latentrm.runtime import DTYPES

    assert vae.RECON_LOSSES == CHOICES["vae.recon"]
    assert vae.REDUCTIONS == CHOICES["vae.recon_reduction"]
    assert vae.DIVERGENCES == CHOICES["vae.divergence"]
    assert synth.LIKELIHOODS == CHOICES["synth.likelihood"]
    assert (synth.PAIRINGS, synth.NOISE_ON, synth.DECODES) == (
        CHOICES["synth.pairing"],
        CHOICES["synth.noise_on"],
        CHOICES["synth.decode"],
    )
    assert ("none", *teacher.TEACHER_MODES) == CHOICES["synth.teacher"]
    assert DTYPES == CHOICES["embed.dtype"]


RELATIONS = [
    (
        ["vae.logvar_min=5", "vae.logvar_max=1"],
        "vae.logvar_min (5.0) must be < vae.logvar_max (1.0)",
    ),
    (
        ["vae.logvar_min=2", "vae.logvar_max=2"],
        "vae.logvar_min (2.0) must be < vae.logvar_max (2.0)",
    ),
    (["synth.top_k=17"], "synth.top_k=17 must be <= synth.n_candidates=16"),
    (
        ["vae.divergence=w2_squared", "vae.gamma=0.25"],
        "vae.divergence=w2_squared needs vae.gamma < vae.beta/4 (got gamma=0.25, beta=1.0)",
    ),
    (
        ["vae.divergence=w2_squared", "vae.beta=2", "vae.gamma=0.6"],
        "vae.divergence=w2_squared needs vae.gamma < vae.beta/4 (got gamma=0.6, beta=2.0)",
    ),
    # the smallest k with (1+k)^2 - 1 >= 400 is 20, more than the 16 candidates drawn
    (
        ["ratios=[4, 400]", "methods=[none, lens]"],
        "ratios=400 with lens keeps synth.top_k=20 samples per seed embedding (the smallest k with "
        "(1+k)^2 - 1 >= 400), more than synth.n_candidates=16",
    ),
    (
        ["ratios=[9]", "synth.top_k=2", "methods=[lens]"],
        "ratios=9 with lens needs (1+synth.top_k)^2 - 1 >= 9, but synth.top_k=2 gives 8",
    ),
]


@pytest.mark.parametrize(
    ("overrides", "message"), RELATIONS, ids=[" ".join(r[0]) for r in RELATIONS]
)
def test_rules_between_keys_are_checked_at_load(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, overrides)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_rules_between_keys_allow_what_is_fine() -> None:
    load_config(None, ["vae.divergence=w2_squared", "vae.gamma=0.24"])
    load_config(None, ["vae.divergence=w2", "vae.gamma=5"])
    load_config(None, ["synth.top_k=16", "ratios=[4, 200]"])
    load_config(None, ["ratios=[400]", "methods=[none, direct]"])  # no LENS: no top_k needed
    load_config(None, ["ratios=[400]", "synth.n_candidates=20"])


def test_drifted_bounds_have_one_source() -> None:
    """teacher_tau and sigma2 were bounded twice, differently: the config let teacher_tau=1 and
    the teacher refused it after embedding; sigma2=0 was refused by one check, allowed by the
    other. Now the table holds the bound and the method asks the table."""
    from latentrm.augment.teacher import TeacherLabels
    from latentrm.config import RewardConfig
    from latentrm.config.bounds import check_value

    with pytest.raises(ConfigError, match=r"^synth\.teacher_tau must be < 1, got 1\.0$"):
        load_config(None, ["synth.teacher_tau=1"])
    with pytest.raises(ConfigError, match=r"^synth\.sigma2 must be > 0, got 0\.0$"):
        load_config(None, ["synth.sigma2=0"])
    with pytest.raises(ConfigError, match=r"^synth\.teacher_tau must be < 1, got 1\.0$"):
        check_value("synth.teacher_tau", 1.0)
    with pytest.raises(ConfigError, match=r"^synth\.teacher_tau must be < 1, got 1\.0$"):
        TeacherLabels(None, RewardConfig(), "filter", 5, 1.0, 0).fit(None, None)
    with pytest.raises(ConfigError, match=r"^embed\.max_length must be >= 2, got 1$"):
        load_config(None, ["embed.max_length=1"])


UPPER = [
    ("threads=100000", "threads must be <= 1024, got 100000"),
    ("embed.threads=5000", "embed.threads must be <= 1024, got 5000"),
    ("vae.latent_dim=100000", "vae.latent_dim must be <= 4096, got 100000"),
    ("vae.hidden=[64,1000000]", "vae.hidden must be <= 16384, got 1000000 in [64, 1000000]"),
    ("reward.hidden=[1000000]", "reward.hidden must be <= 16384, got 1000000 in [1000000]"),
    ("synth.n_candidates=10000000", "synth.n_candidates must be <= 4096, got 10000000"),
    ("ratios=[4,1000000]", "ratios must be <= 1024, got 1000000 in [4, 1000000]"),
    ("eval.n_bootstrap=1000000000", "eval.n_bootstrap must be <= 100000, got 1000000000"),
    ("eval.best_of_n=100000", "eval.best_of_n must be <= 4096, got 100000"),
    ("reward.ensemble=1000", "reward.ensemble must be <= 64, got 1000"),
    ("synth.teacher_heads=1000", "synth.teacher_heads must be <= 64, got 1000"),
    ("embed.max_length=10000000", "embed.max_length must be <= 131072, got 10000000"),
    ("select_folds=100000", "select_folds must be <= 100, got 100000"),
    (f"embed.layer={10**24}", f"embed.layer must be <= 1024, got {10**24}"),
    ("embed.layers=[15, -2000]", "embed.layers must be >= -1024, got -2000 in [15, -2000]"),
]


@pytest.mark.parametrize(("override", "message"), UPPER, ids=[u[0] for u in UPPER])
def test_sizes_have_upper_bounds(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert str(e.value) == message


@pytest.mark.parametrize("key", ["vae.hidden", "reward.hidden"])
def test_mlp_depth_is_bounded(key: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, [f"{key}=[{','.join(['8'] * 17)}]"])
    assert str(e.value) == f"{key}: at most 16 layers, got 17"
    load_config(None, [f"{key}=[{','.join(['8'] * 16)}]", "threads=1024"])
