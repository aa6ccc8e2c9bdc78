"""The container image's Dockerfile, checked by reading it: no Docker engine runs
these tests, so the image itself is not built here."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deploy" / "docker"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages(path: Path) -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for ins in instructions(path):
        if ins[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(ins)
    return found


def test_multi_stage_slim_and_runtime_stage_copies_only_the_venv() -> None:
    build, runtime = stages(DOCKER / "Dockerfile")
    assert all("-slim" in s[0][1] for s in (build, runtime))
    assert build[0][1].endswith(" AS build") and runtime[0][1].endswith(" AS runtime")
    copies = [args for word, args in runtime if word == "COPY"]
    assert copies == ["--from=build /opt/ttg /opt/ttg"]


def test_runs_as_non_root_with_ttg_as_entrypoint() -> None:
    runtime = stages(DOCKER / "Dockerfile")[-1]
    users = [args for word, args in runtime if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    (entrypoint,) = [args for word, args in runtime if word == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["ttg"]
    installs = " ".join(args for word, args in stages(DOCKER / "Dockerfile")[0] if word == "RUN")
    for extra in ("redis", "amqp", "postgres", "metrics"):  # what the manifests need
        assert extra in installs


def test_healthcheck_is_valid_python_probing_the_metrics_ports() -> None:
    runtime = stages(DOCKER / "Dockerfile")[-1]
    (health,) = [args for word, args in runtime if word == "HEALTHCHECK"]
    command = json.loads(health.partition("CMD ")[2])
    assert command[:2] == ["python", "-c"]
    ast.parse(command[2])
    assert "9475" in command[2] and "9470" in command[2]


def test_derived_image_adds_code_and_stays_non_root() -> None:
    steps = instructions(DOCKER / "example" / "Dockerfile")
    assert steps[0] == ("FROM", "ttg:0.1.0")
    assert [a for w, a in steps if w == "USER"][-1] == "10001:10001"
    assert ("ENV", "PYTHONPATH=/app") in steps
    assert (DOCKER / "example" / "mymodel" / "__init__.py").exists()
