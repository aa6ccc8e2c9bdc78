"""A Redis URL's ``?prefix=NAME`` (drivers/redis.py): every TTG key, in Python and
in the Lua scripts, moves under it; nothing else of the URL changes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ttg.drivers.redis import in_keyspace, keyspace
from ttg.errors import ConfigError

SOURCES = Path(__file__).resolve().parents[2] / "src" / "ttg"


def test_no_prefix_keeps_the_url_and_ttg_keys() -> None:
    assert keyspace("redis://h:6379/0") == ("redis://h:6379/0", "ttg:")


def test_a_prefix_is_taken_off_the_url_and_kept_for_the_keys() -> None:
    url = "rediss://u:p@h:6380/2?ssl_cert_reqs=required&prefix=team-a&ssl_ca_certs=%2Fca.pem"
    assert keyspace(url) == ("rediss://u:p@h:6380/2?ssl_cert_reqs=required&ssl_ca_certs=%2Fca.pem",
                             "team-a:ttg:")


@pytest.mark.parametrize("query", ["prefix=", "prefix=a%20b", "prefix=a'b", "prefix=" + "x" * 65,
                                   "prefix=a&prefix=b", "prefix=a*"])
def test_a_bad_prefix_says_what_a_prefix_may_be(query: str) -> None:
    with pytest.raises(ConfigError, match=r"give one prefix of 1 to 64 letters, digits"):
        keyspace(f"redis://h/0?{query}")


def test_every_literal_key_of_every_script_moves() -> None:
    """Each script's literal keys are written ``'ttg:...'``; after ``in_keyspace`` no
    key outside the prefix is left (the broker's and the store's scripts)."""
    scripts = []
    for module in ("brokers/redis_streams.py", "stores/redis.py"):
        text = (SOURCES / module).read_text()
        scripts += re.findall(r'"""\n(.*?)"""', text, re.S)
    lua = "\n".join(s for s in scripts if "redis.call" in s)
    assert "'ttg:" in lua
    moved = in_keyspace(lua, "t-1:ttg:")
    assert "'ttg:" not in moved and '"ttg:' not in moved
    assert moved.count("'t-1:ttg:") == lua.count("'ttg:")
