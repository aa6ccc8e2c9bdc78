"""Settings: one frozen object, read once, passed down explicitly.

Precedence: command-line flags > ``TTG_*`` environment variables > defaults.
This is the only module that reads the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError

#: Environment variables and the setting each one sets.
#: what TTG_LOG_LEVEL may be (the -v / -vv flags win: INFO / DEBUG)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

#: the longest lease, grace period or presence interval a setting may ask for, in seconds
DAY = 86400.0

ENV_VARS: dict[str, str] = {
    "TTG_HOME": "home",
    "TTG_BROKER": "broker",
    "TTG_STORE": "store",
    "TTG_WORKERS": "workers",
    "TTG_LEASE_SECONDS": "lease_seconds",
    "TTG_GRACE_SECONDS": "grace_seconds",
    "TTG_SECRET": "secret",
    "TTG_ALLOW": "allow",
    "TTG_LOG_LEVEL": "log_level",
    "TTG_LOG_FORMAT": "log_format",
    "TTG_DASHBOARD_TOKEN": "dashboard_token",
    "TTG_SHARD": "shard",
    "TTG_PRESENCE_SECONDS": "presence_seconds",
    "TTG_PROGRESS_SECONDS": "progress_seconds",
    "TTG_GPUS": "gpus",
    "TTG_CHILDREN_PER_GPU": "children_per_gpu",
}

#: where ``--gpus auto`` finds the devices this process may use, first match wins: the
#: CUDA (or ROCm) runtime's own restriction, then SLURM's allocation to the step or job
GPU_VARIABLES = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "SLURM_STEP_GPUS",
                 "SLURM_JOB_GPUS")


@dataclass(frozen=True)
class Settings:
    """Everything a client or a worker needs to know about where and how to run.

    ``broker`` and ``store`` are URLs; empty means the embedded SQLite files
    under ``home``.
    """

    home: Path = Path(".ttg")
    broker: str = ""
    store: str = ""
    #: Worker child processes per supervisor; 0 means one per core.
    workers: int = 0
    #: How long a lease lives without a heartbeat; a dead machine's chunks
    #: come back after at most this long.
    lease_seconds: float = 10.0
    #: How long a SIGTERMed worker may finish its current chunks.
    grace_seconds: float = 25.0
    #: Shared secret for HMAC message signing; empty means unsigned.
    secret: str = ""
    #: Extra allow-list patterns (see funcref.AllowList).
    allow: tuple[str, ...] = ()
    log_level: str = "WARNING"
    #: "human" (default) or "json": one JSON object per line (ttg.logs).
    log_format: str = "human"
    #: The token ``ttg dashboard`` requires off loopback; empty: a random one.
    dashboard_token: str = ""
    #: ``ttg worker --shard``: "I/N" or "auto/N" (I from JOB_COMPLETION_INDEX or
    #: SLURM_ARRAY_TASK_ID); "": off.
    shard: str = ""
    #: ``ttg worker --gpus``: the devices its children split ("0,1,2,3"), "auto" (found
    #: by worker/devices.py: none named by GPU_VARIABLES), or "": children choose none.
    gpus: str = ""
    #: Children that share one device (``--children-per-gpu``).
    children_per_gpu: int = 1
    #: How often a worker supervisor writes its presence beat to the store; 0: never.
    presence_seconds: float = 2.0
    #: How often ``ttg run`` and ``ttg.run`` print a progress line when their output is
    #: not a terminal nor a notebook (a log file, CI); 0: never.
    progress_seconds: float = 10.0
    #: How long an idle child waits between polls of an empty queue.
    poll_seconds: float = 0.05
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def worker_count(self) -> int:
        return self.workers or (os.cpu_count() or 1)

    @property
    def broker_url(self) -> str:
        return self.broker or f"local://{self.home.resolve() / 'broker.db'}"

    @property
    def store_url(self) -> str:
        """The store, or the broker's natural partner: its own server for Redis,
        the embedded file for the embedded broker; "" when there is none."""
        if self.store:
            return self.store
        scheme = self.broker.partition("://")[0]
        if scheme in ("redis", "rediss"):
            return self.broker
        if not self.broker or scheme == "local":
            return f"sqlite://{self.home.resolve() / 'results.db'}"
        return ""

    def to_record(self) -> dict[str, Any]:
        """The settings as JSON carries them (``from_record`` reads them back)."""
        return {**asdict(self), "home": str(self.home), "allow": list(self.allow), "extra": dict(self.extra)}

    @classmethod
    def from_record(cls, d: Mapping[str, Any]) -> Settings:
        return cls(**{**d, "home": Path(d["home"]), "allow": tuple(d["allow"])})

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with every override that is not None applied and validated."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return _validated(replace(self, **given))


def load(environ: Mapping[str, str] | None = None, **flags: Any) -> Settings:
    """Build settings from ``environ`` (default: the process environment) and flags."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    kinds = {f.name: f.type for f in fields(Settings)}
    for var, name in ENV_VARS.items():
        raw = env.get(var)
        if raw is None or raw == "":
            continue
        values[name] = _parse(var, raw, str(kinds[name]))
    values.update({k: v for k, v in flags.items() if v is not None})
    if "home" in values:
        values["home"] = Path(values["home"])
    else:
        values["home"] = find_home()
    if "allow" in values:
        values["allow"] = tuple(values["allow"])
    if str(values.get("shard", "")).startswith("auto/"):
        index = _array_index(env)
        if index is not None:
            values["shard"] = index + values["shard"].removeprefix("auto")
    if str(values.get("shard", "")) == "auto" and env.get("SLURM_ARRAY_TASK_COUNT"):
        values["shard"] = f"{_array_index(env)}/{env['SLURM_ARRAY_TASK_COUNT']}"
    if values.get("gpus") == "auto":
        given = next((env[v] for v in GPU_VARIABLES if env.get(v, "").strip()), None)
        if given is not None:
            values["gpus"] = given
    return _validated(Settings(**values))


def _array_index(env: Mapping[str, str]) -> str | None:
    """This task's index from 0 in a Kubernetes Indexed Job (JOB_COMPLETION_INDEX) or a
    SLURM job array (SLURM_ARRAY_TASK_ID, counted from SLURM_ARRAY_TASK_MIN: an array
    may start at 1); None outside both."""
    if env.get("JOB_COMPLETION_INDEX"):
        return env["JOB_COMPLETION_INDEX"]
    task = env.get("SLURM_ARRAY_TASK_ID")
    if not task:
        return None
    try:
        return str(int(task) - int(env.get("SLURM_ARRAY_TASK_MIN") or 0))
    except ValueError:
        return task  # as it is: parsing it says what is wrong


def find_home(start: Path | None = None) -> Path:
    """The TTG home when none is given: ``./.ttg``, or else the nearest ``.ttg`` of a
    parent directory (as git finds its repository), so that commands run from a
    subdirectory of a project find its sweeps; ``./.ttg`` when there is none."""
    here = Path(".ttg")
    cwd = (start or Path.cwd()).resolve()
    if (cwd / ".ttg").is_dir():
        return here
    for parent in cwd.parents:
        if (parent / ".ttg").is_dir():
            return parent / ".ttg"
    return here


def _parse(var: str, raw: str, kind: str) -> Any:
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise ConfigError(f"{var}={raw!r} is not a number; set it to a number or unset it.") from None
    if kind.startswith("tuple"):
        return tuple(p.strip() for p in raw.split(",") if p.strip())
    return raw


def _validated(s: Settings) -> Settings:
    if s.workers < 0:
        raise ConfigError(f"workers must be 0 (one per core) or more, not {s.workers}.")
    if not 0 < s.lease_seconds <= DAY:  # (also rejects NaN and infinity)
        raise ConfigError(f"lease seconds must be a positive number of seconds, at most a day ({DAY:g}), "
                          f"not {s.lease_seconds} (TTG_LEASE_SECONDS, --lease-seconds).")
    if not 0 <= s.grace_seconds <= DAY:
        raise ConfigError(f"grace seconds must be from 0 to a day ({DAY:g}), not {s.grace_seconds} "
                          "(TTG_GRACE_SECONDS, --grace).")
    if not 0 <= s.presence_seconds <= DAY:
        raise ConfigError(f"presence seconds must be from 0 (off) to a day ({DAY:g}), not "
                          f"{s.presence_seconds} (TTG_PRESENCE_SECONDS).")
    if not 0 <= s.progress_seconds <= DAY:
        raise ConfigError(f"progress seconds must be from 0 (no progress lines) to a day ({DAY:g}), not "
                          f"{s.progress_seconds} (TTG_PROGRESS_SECONDS).")
    if not 1 <= s.children_per_gpu <= 64:
        raise ConfigError(f"children per GPU must be from 1 to 64, not {s.children_per_gpu} "
                          "(--children-per-gpu, TTG_CHILDREN_PER_GPU).")
    if s.log_format not in ("human", "json"):
        raise ConfigError(f"log format must be human or json, not {s.log_format!r}.")
    if s.log_level.upper() not in LOG_LEVELS:
        raise ConfigError(f"log level must be one of {', '.join(LOG_LEVELS)}, not {s.log_level!r} "
                          "(TTG_LOG_LEVEL).")
    return s
