"""The minimum-rights Redis user documented in docs/backends/redis.md can run a whole
sweep: the ACL line is read from the docs, so docs and code cannot drift apart."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis

from tests.conftest import ROOT, sweep_id_from, ttg
from ttg.testing import PrivateRedis


def documented_acl() -> list[str]:
    text = (ROOT / "docs" / "backends" / "redis.md").read_text()
    line = re.search(r"^ACL SETUSER .*$", text, re.MULTILINE)
    assert line, "docs/backends/redis.md lost its ACL SETUSER line"
    return line.group(0).replace("CHANGE-ME", "s3cret").split()


@pytest.mark.parametrize("prefix", ["", "team-a"])
def test_documented_acl_user_runs_a_sweep(tmp_path: Path, home: Path, prefix: str) -> None:
    """As documented, and with a key prefix (``?prefix=team-a``, keys ``~team-a:ttg:*``)."""
    acl = documented_acl()
    if prefix:
        acl = [f"~{prefix}:ttg:*" if a == "~ttg:*" else a for a in acl]
    with PrivateRedis(tmp_path / "redis") as server:
        admin = redis.Redis(port=server.port)
        admin.execute_command(*acl)
        url = f"redis://ttg:s3cret@127.0.0.1:{server.port}/0" + (f"?prefix={prefix}" if prefix else "")
        run = ttg(home, "run", "tests.funcs:fail_on_multiples_of_7", "--range", "300", "--workers", "2",
                  "--chunk-size", "20", "--broker", url, "--timeout", "5")
        assert run.returncode == 0, run.stderr
        sweep = sweep_id_from(run.stdout)
        assert "ok 257  error 43" in run.stdout
        for cmd in (["status", sweep], ["list"], ["errors", sweep], ["results", sweep, "-o",
                                                                      str(tmp_path / "r.parquet")]):
            out = ttg(home, *cmd, "--broker", url)
            assert out.returncode == 0, out.stderr
        retry = ttg(home, "retry", sweep, "--workers", "1", "--broker", url)
        assert retry.returncode == 0, retry.stderr
        cancel = ttg(home, "cancel", sweep, "--broker", url)
        assert cancel.returncode == 0, cancel.stderr
        # every key is under the prefix, and the user really is restricted
        want = f"{prefix}:ttg:" if prefix else "ttg:"
        assert all(k.startswith(want.encode()) for k in admin.keys("*")), admin.keys("*")
        admin.close()
        limited = redis.Redis(port=server.port, username="ttg", password="s3cret")
        try:
            limited.set("other:key", 1)
        except redis.exceptions.NoPermissionError:
            pass
        else:
            raise AssertionError("the documented user may write outside ttg:*")
        finally:
            limited.close()
