"""The Kubernetes manifests (deploy/k8s): every overlay renders offline, every
object is valid against the Kubernetes schemas (KEDA ScaledObject and
ServiceMonitor against models generated from their CRDs), and every flag and
TTG_* variable the pods use exists in TTG's real CLI and settings."""

from __future__ import annotations

import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import kubernetes_validate
import pytest
import yaml

from ttg import settings
from ttg.cli.commands import cli

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())
KUBERNETES_VERSION = "1.33"  # the oldest with backoffLimitPerIndex and podFailurePolicy GA
TTG_IMAGE = "ttg"
#: Secret keys read by the in-cluster servers, not by TTG
SERVER_KEYS = {"REDIS_PASSWORD", "RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS", "POSTGRES_PASSWORD"}
TEMPLATED = ("Deployment", "StatefulSet", "Job")


@cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    kubectl = Path(sys.executable).parent / "kubectl"
    out = subprocess.run([str(kubectl), "kustomize", str(K8S / "overlays" / overlay)],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def templates(objs: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    return [o["spec"]["template"] for o in objs if o["kind"] in TEMPLATED]


def ttg_containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    if obj["kind"] not in TEMPLATED:
        return []
    spec = obj["spec"]["template"]["spec"]
    return [c for c in spec.get("initContainers", []) + spec["containers"]
            if c["image"].split(":")[0] == TTG_IMAGE]


def by_kind(objs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def secret_data(objs: tuple[dict[str, Any], ...]) -> dict[str, str]:
    (secret,) = [o for o in by_kind(objs, "Secret") if o["metadata"]["name"] == "ttg-secrets"]
    return dict(secret.get("stringData", {}))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_objects_are_valid(overlay: str) -> None:
    from cloudcoil.models.keda.v1alpha1 import ScaledObject
    from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor

    crds: dict[str, Any] = {"ScaledObject": ScaledObject, "ServiceMonitor": ServiceMonitor}
    objs = render(overlay)
    assert objs
    for obj in objs:
        if obj["kind"] in crds:
            crds[obj["kind"]].model_validate(obj)  # raises on a missing or mistyped field
        else:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_validation_catches_mistakes() -> None:
    """The checks above are not vacuous."""
    from cloudcoil.models.keda.v1alpha1 import ScaledObject
    from pydantic import ValidationError

    (deployment,) = [o for o in by_kind(render("redis"), "Deployment")
                     if o["metadata"]["name"] == "ttg-worker"]
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    (scaled,) = by_kind(render("redis"), "ScaledObject")
    bad = scaled_copy(scaled)
    del bad["spec"]["scaleTargetRef"]
    with pytest.raises(ValidationError):
        ScaledObject.model_validate(bad)


def scaled_copy(obj: dict[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = yaml.safe_load(yaml.safe_dump(obj))
    return copied


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_flags_exist_in_the_cli(overlay: str) -> None:
    containers = [c for o in render(overlay) for c in ttg_containers(o)]
    assert containers
    for c in containers:
        args = c["args"]
        command = cli.commands.get(args[0])
        assert isinstance(command, click.Command), f"{c['name']}: no command ttg {args[0]}"
        known = {opt for p in command.params for opt in p.opts if opt.startswith("-")}
        unknown = [a for a in args[1:] if a.startswith("-") and a.split("=")[0] not in known]
        assert not unknown, f"{c['name']}: ttg {args[0]} has no {unknown}"
        command.make_context(f"ttg {args[0]}", list(args[1:]))  # parses them as the pod would


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_environment_variables_exist_in_settings(overlay: str) -> None:
    objs = render(overlay)
    (config,) = by_kind(objs, "ConfigMap")
    given = set(config["data"]) | set(secret_data(objs))
    for obj in objs:
        for c in ttg_containers(obj):
            given |= {e["name"] for e in c.get("env", [])}
    ttg_vars = {v for v in given if v not in SERVER_KEYS}
    assert ttg_vars <= set(settings.ENV_VARS), sorted(ttg_vars - set(settings.ENV_VARS))
    # and the values parse as TTG would parse them
    settings.load(environ={k: v for k, v in config["data"].items()})


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_release_their_chunks_before_being_killed(overlay: str) -> None:
    objs = render(overlay)
    (config,) = by_kind(objs, "ConfigMap")
    grace = float(config["data"]["TTG_GRACE_SECONDS"])
    for obj in objs:
        if ttg_containers(obj) and obj["metadata"]["name"] != "ttg-exporter":
            period = obj["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            # the grace, then killing children and releasing their leases
            assert period >= grace + 10, f"{obj['metadata']['name']}: {period} s for a {grace} s grace"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_ttg_pods_reach_the_servers(overlay: str) -> None:
    objs = render(overlay)
    for tpl in templates(objs):
        if any(c["image"].split(":")[0] == TTG_IMAGE for c in tpl["spec"]["containers"]):
            assert tpl["metadata"]["labels"].get("ttg.io/client") == "true"
        else:
            assert "ttg.io/client" not in tpl["metadata"]["labels"]
    policies = {p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]: p
                for p in by_kind(objs, "NetworkPolicy")}
    for server in by_kind(objs, "StatefulSet"):
        name = server["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        policy = policies[name]
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        assert [r["from"] for r in policy["spec"]["ingress"]] == [
            [{"podSelector": {"matchLabels": {"ttg.io/client": "true"}}}]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_server_passwords_match_the_urls(overlay: str) -> None:
    data = secret_data(render(overlay))
    for var in ("TTG_BROKER", "TTG_STORE"):
        url = urlsplit(data.get(var, ""))
        if url.hostname in ("ttg-redis", "ttg-rabbitmq", "ttg-postgres"):
            key = {"ttg-redis": "REDIS_PASSWORD", "ttg-rabbitmq": "RABBITMQ_DEFAULT_PASS",
                   "ttg-postgres": "POSTGRES_PASSWORD"}[url.hostname]
            assert url.password == data[key], f"{var} and {key} differ"


@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if by_kind(render(o), "ScaledObject")])
def test_keda_counts_in_flight_chunks_and_scales_to_zero(overlay: str) -> None:
    objs = render(overlay)
    (scaled,) = by_kind(objs, "ScaledObject")
    spec = scaled["spec"]
    target = spec["scaleTargetRef"]
    assert [d["metadata"]["name"] for d in by_kind(objs, "Deployment")
            if d["metadata"]["name"] == target["name"]] == ["ttg-worker"]
    assert spec["minReplicaCount"] == 0 and spec["fallback"]["replicas"] > 0
    (trigger,) = spec["triggers"]
    query = trigger["metadata"]["query"]
    assert trigger["type"] == "prometheus"
    # TTG's own metrics, both of them: queued and leased (in flight)
    assert "ttg_sweep_queued_chunks" in query and "ttg_sweep_leased_chunks" in query
    assert "ttg_exporter_backend_up" in query and trigger["metadata"]["ignoreNullValues"] == "false"
    exporter_source = (ROOT / "src" / "ttg" / "observe" / "exporter.py").read_text()
    for metric in re.findall(r"ttg_\w+", query):
        assert metric.removeprefix("ttg_") in exporter_source or metric in exporter_source, metric


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_scraped_ports_exist(overlay: str) -> None:
    objs = render(overlay)
    for tpl in templates(objs):
        ann = tpl["metadata"].get("annotations", {})
        if ann.get("prometheus.io/scrape") == "true":
            ports = [p["containerPort"] for c in tpl["spec"]["containers"] for p in c.get("ports", [])]
            assert int(ann["prometheus.io/port"]) in ports
            args = [a for c in tpl["spec"]["containers"] for a in c["args"]]
            assert ann["prometheus.io/port"] in args and "0.0.0.0" in args
    for monitor in by_kind(objs, "ServiceMonitor"):
        selected = [s for s in by_kind(objs, "Service")
                    if monitor["spec"]["selector"]["matchLabels"].items()
                    <= s["metadata"].get("labels", {}).items()]
        assert selected
        for s in selected:
            assert "metrics" in [p["name"] for p in s["spec"]["ports"]]


def test_shard_job_is_indexed_and_retried_per_index() -> None:
    (job,) = by_kind(render("shard-job"), "Job")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["backoffLimitPerIndex"] >= 1
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    (shard,) = spec["template"]["spec"]["containers"]
    args = shard["args"]
    n = int(args[args.index("--shard") + 1].removeprefix("auto/"))
    assert spec["completions"] == n
    (register,) = spec["template"]["spec"]["initContainers"]
    assert "--no-queue" in register["args"]
    assert register["args"][register["args"].index("--name") + 1] == args[args.index("--sweep") + 1]
    assert secret_data(render("shard-job"))["TTG_STORE"].startswith("postgresql://")


def test_images_carry_the_package_version() -> None:
    from ttg import __version__ as version

    for overlay in OVERLAYS:
        for obj in render(overlay):
            for c in ttg_containers(obj):
                assert c["image"] == f"{TTG_IMAGE}:{version}"


def test_gpu_workers_ask_for_a_gpu_and_split_it() -> None:
    (deployment,) = [o for o in by_kind(render("redis-gpu"), "Deployment")
                     if o["metadata"]["name"] == "ttg-worker"]
    pod = deployment["spec"]["template"]["spec"]
    (worker,) = ttg_containers(deployment)
    resources = worker["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == "1"
    env = {e["name"]: e.get("value") for e in worker["env"]}
    # the children follow the GPUs: a CPU-derived TTG_WORKERS would not match and is refused
    assert env == {"TTG_GPUS": "auto", "TTG_CHILDREN_PER_GPU": "1"}
    in_pod = {k: str(v) for k, v in env.items()} | {"CUDA_VISIBLE_DEVICES": "0"}
    assert settings.load(environ=in_pod).gpus == "0"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
