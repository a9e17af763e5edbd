"""The CLI's own behaviour: a LatentrmError is one line on stderr, exit 2; --debug re-raises."""

from __future__ import annotations

import pytest

from latentrm.cli import main
from latentrm.errors import ConfigError


def test_cli_prints_one_line_error_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "vae.gama=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "latentrm: error: unknown config key 'vae.gama'; did you mean 'vae.gamma'?"
    with pytest.raises(ConfigError):
        main(["--debug", "config", "vae.gama=1"])
