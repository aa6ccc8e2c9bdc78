"""Settings: flags > TTG_* environment > defaults, validated once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ttg import settings as settings_mod
from ttg.errors import ConfigError
from ttg.settings import ENV_VARS, Settings

ENV = {
    "TTG_HOME": "/env/home", "TTG_BROKER": "redis://env:6379/0", "TTG_STORE": "postgresql://env/db",
    "TTG_WORKERS": "3", "TTG_LEASE_SECONDS": "7.5", "TTG_GRACE_SECONDS": "0", "TTG_SECRET": "env-secret",
    "TTG_ALLOW": "pkg.mod, other:fn,,", "TTG_LOG_LEVEL": "INFO",
}


def test_defaults() -> None:
    s = settings_mod.load(environ={})
    assert s == Settings()
    assert s.home == Path(".ttg")
    assert (s.broker, s.store, s.workers, s.secret, s.allow) == ("", "", 0, "", ())
    assert s.lease_seconds == 10.0
    assert s.presence_seconds == 2.0
    assert s.worker_count == (os.cpu_count() or 1)


def test_environment_overrides_defaults() -> None:
    s = settings_mod.load(environ=ENV)
    assert s.home == Path("/env/home")
    assert s.broker == "redis://env:6379/0"
    assert s.store == "postgresql://env/db"
    assert s.workers == 3
    assert s.worker_count == 3
    assert s.lease_seconds == 7.5
    assert s.grace_seconds == 0.0
    assert s.secret == "env-secret"
    assert s.allow == ("pkg.mod", "other:fn")
    assert s.log_level == "INFO"


def test_flags_override_environment() -> None:
    s = settings_mod.load(environ=ENV, home="/flag/home", broker="local:///x.db", workers=1,
                          lease_seconds=2, secret="flag", allow=["a.b"])
    assert s.home == Path("/flag/home")
    assert s.broker == "local:///x.db"
    assert s.workers == 1
    assert s.lease_seconds == 2
    assert s.secret == "flag"
    assert s.allow == ("a.b",)
    assert s.store == "postgresql://env/db"  # not given as a flag: the environment's


def test_none_flags_and_empty_variables_are_ignored() -> None:
    s = settings_mod.load(environ={"TTG_WORKERS": "", "TTG_SECRET": "", "TTG_LEASE_SECONDS": "4"},
                          workers=None, lease_seconds=None)
    assert s.workers == 0
    assert s.secret == ""
    assert s.lease_seconds == 4.0


def test_presence_seconds_from_the_environment() -> None:
    assert settings_mod.load(environ={"TTG_PRESENCE_SECONDS": "0.5"}).presence_seconds == 0.5
    assert settings_mod.load(environ={"TTG_PRESENCE_SECONDS": "0"}).presence_seconds == 0.0  # off


def test_unknown_variables_are_ignored() -> None:
    assert settings_mod.load(environ={"TTG_NOPE": "1", "HOME": "/root"}) == Settings()


def test_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TTG_WORKERS", "5")
    assert settings_mod.load().workers == 5


@pytest.mark.parametrize(("var", "raw"), [
    ("TTG_WORKERS", "four"), ("TTG_WORKERS", "1.5"), ("TTG_LEASE_SECONDS", "10s"),
    ("TTG_GRACE_SECONDS", "soon"),
])
def test_bad_numbers_in_the_environment(var: str, raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_mod.load(environ={var: raw})
    message = str(info.value)
    assert f"{var}={raw!r} is not a number" in message
    assert "\n" not in message


@pytest.mark.parametrize(("env", "flags", "expected"), [
    ({"TTG_WORKERS": "-1"}, {}, "workers must be 0"),
    ({}, {"workers": -2}, "workers must be 0"),
    ({"TTG_LEASE_SECONDS": "0"}, {}, "lease seconds must be a positive number of seconds, at most a day"),
    ({"TTG_LEASE_SECONDS": "nan"}, {}, "lease seconds must be a positive number"),
    ({"TTG_LEASE_SECONDS": "inf"}, {}, "lease seconds must be a positive number"),
    ({"TTG_LEASE_SECONDS": "86401"}, {}, r"at most a day \(86400\)"),
    ({}, {"lease_seconds": -1.0}, "lease seconds must be a positive number"),
    ({"TTG_GRACE_SECONDS": "-1"}, {}, "grace seconds must be from 0 to a day"),
    ({"TTG_GRACE_SECONDS": "NaN"}, {}, "grace seconds must be from 0 to a day"),
    ({"TTG_PRESENCE_SECONDS": "-1"}, {}, r"presence seconds must be from 0 \(off\) to a day"),
    ({"TTG_PRESENCE_SECONDS": "nan"}, {}, "presence seconds must be from 0"),
])
def test_out_of_range_values(env: dict[str, str], flags: dict[str, float], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        settings_mod.load(environ=env, **flags)


def test_a_flag_can_fix_a_bad_variable() -> None:
    assert settings_mod.load(environ={"TTG_WORKERS": "-1"}, workers=2).workers == 2


def test_with_overrides() -> None:
    base = settings_mod.load(environ={}, workers=2)
    s = base.with_overrides(workers=None, secret="x", home=Path("/h"))
    assert (s.workers, s.secret, s.home) == (2, "x", Path("/h"))
    assert base.secret == ""  # frozen: a copy
    with pytest.raises(ConfigError):
        base.with_overrides(lease_seconds=0)
    with pytest.raises(AttributeError):
        base.workers = 3  # type: ignore[misc]


def test_urls(tmp_path: Path) -> None:
    s = settings_mod.load(environ={}, home=tmp_path)
    assert s.broker_url == f"local://{tmp_path / 'broker.db'}"
    assert s.store_url == f"sqlite://{tmp_path / 'results.db'}"
    net = s.with_overrides(broker="redis://localhost:6379/0")
    assert net.store_url == "redis://localhost:6379/0"
    both = s.with_overrides(broker="amqp://h", store="postgresql://h/db")
    assert (both.broker_url, both.store_url) == ("amqp://h", "postgresql://h/db")
    relative = settings_mod.load(environ={"TTG_HOME": "rel"})
    assert Path(relative.broker_url.removeprefix("local://")).is_absolute()


@pytest.mark.parametrize(("environ", "shard"), [
    ({"TTG_SHARD": "auto/8", "JOB_COMPLETION_INDEX": "3"}, "3/8"),
    ({"TTG_SHARD": "auto/8", "SLURM_ARRAY_TASK_ID": "5"}, "5/8"),
    ({"TTG_SHARD": "auto/8", "SLURM_ARRAY_TASK_ID": "6", "SLURM_ARRAY_TASK_MIN": "1"}, "5/8"),
    ({"TTG_SHARD": "auto", "SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "1",
      "SLURM_ARRAY_TASK_COUNT": "16"}, "0/16"),
    ({"TTG_SHARD": "auto/8"}, "auto/8"),
])
def test_shard_auto_learns_the_array_index(environ: dict[str, str], shard: str) -> None:
    assert settings_mod.load(environ=environ).shard == shard


@pytest.mark.parametrize(("environ", "gpus"), [
    ({"TTG_GPUS": "auto", "CUDA_VISIBLE_DEVICES": "1,3"}, "1,3"),
    ({"TTG_GPUS": "auto", "SLURM_JOB_GPUS": "0,1"}, "0,1"),
    ({"TTG_GPUS": "auto", "SLURM_STEP_GPUS": "2", "SLURM_JOB_GPUS": "0,1,2,3"}, "2"),
    ({"TTG_GPUS": "auto", "CUDA_VISIBLE_DEVICES": " "}, "auto"),
    ({"TTG_GPUS": "0,1", "CUDA_VISIBLE_DEVICES": "3"}, "0,1"),
])
def test_gpus_auto_takes_what_this_process_was_given(environ: dict[str, str], gpus: str) -> None:
    assert settings_mod.load(environ=environ).gpus == gpus


def test_settings_travel_as_json() -> None:
    import json

    s = settings_mod.load(environ={"TTG_ALLOW": "a.b,c", "TTG_SECRET": "x", "TTG_GPUS": "0,1"}, home="/h")
    assert Settings.from_record(json.loads(json.dumps(s.to_record()))) == s
