"""The distribution: its name on PyPI, its extras, and what the README and the
missing-extra message say about them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from ttg import extras
from ttg.cli import cli
from ttg.errors import ConfigError
from ttg.version import __version__

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
OPTIONAL = PROJECT["optional-dependencies"]
#: the extras a user installs (test is the project's own)
USER_EXTRAS = set(OPTIONAL) - {"test", "all"}


def test_the_distribution_is_named_as_the_messages_say() -> None:
    assert PROJECT["name"] == extras.DISTRIBUTION == "ttg-sweep"
    assert PROJECT["scripts"] == {"ttg": "ttg.cli:main"}


def test_every_extra_is_known_and_all_means_every_one() -> None:
    assert set(extras.EXTRAS) == USER_EXTRAS
    every = {req for name in USER_EXTRAS for req in OPTIONAL[name]}
    assert set(OPTIONAL["all"]) == every


def test_the_readme_lists_every_extra() -> None:
    readme = (ROOT / "README.md").read_text()
    install = readme[readme.index("## Install"):readme.index("\n## ", readme.index("## Install") + 1)]
    table = set(re.findall(r"^\| `([a-z]+)` \|", install, flags=re.M))
    assert table == USER_EXTRAS | {"all"}
    assert "pip install ttg-sweep" in readme


def test_a_missing_extra_names_the_distribution() -> None:
    with pytest.raises(ConfigError) as exc:
        extras.need("ttg_no_such_module_anywhere", "plot", "ttg plot")
    assert str(exc.value) == ("ttg plot needs ttg_no_such_module_anywhere, which is not installed; "
                              "install it with pip install 'ttg-sweep[plot]'.")


def test_version_does_not_depend_on_the_distribution_name() -> None:
    out = CliRunner().invoke(cli, ["--version"])
    assert out.exit_code == 0 and out.output == f"ttg, version {__version__}\n"
