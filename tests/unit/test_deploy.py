"""What an operator installs: systemd units verify, compose and Kubernetes references resolve."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.environment import missing_dependency
from vmigrate.cli import build_parser

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def parses(args: list[str]) -> None:
    """Every command the deployment runs is one vmigrate accepts."""
    env = os.environ.copy()
    os.environ["VMIGRATE_HOST"] = "node"  # the DaemonSet's host name comes from the environment
    try:
        build_parser().parse_args(args)
    finally:
        os.environ.clear()
        os.environ.update(env)


def test_compose_services_reference_what_exists():
    doc = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    services = doc["services"]
    assert {"redis", "dispatcher", "scheduler", "api"} <= set(services)
    hosts = [s for s in services.values() if s.get("command", [None])[0] == "worker"]
    assert len(hosts) == 3 and all("--driver" in h["command"] for h in hosts)
    for name, service in services.items():
        for dependency in service.get("depends_on", []):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        if name != "redis":
            parses(service["command"])
            assert "@redis:6379" in service["environment"]["VMIGRATE_BROKER_URL"]
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                path = (DEPLOY / "compose" / source).resolve()
                assert path.exists() or path.name == "fleet.key", f"{name} mounts missing {source}"
            else:
                assert source in doc["volumes"], f"{name} uses undeclared volume {source}"


def _pod_specs(docs):
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
            claims = {c["metadata"]["name"] for c in doc["spec"].get("volumeClaimTemplates", [])}
            yield doc["kind"], doc["metadata"]["name"], doc["spec"]["template"], claims


def test_kubernetes_references_resolve():
    docs = [
        d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "vmigrate.yaml").read_text()) if d
    ]
    config = {d["metadata"]["name"]: set(d["data"]) for d in docs if d["kind"] == "ConfigMap"}
    secrets = {d["metadata"]["name"]: set(d["stringData"]) for d in docs if d["kind"] == "Secret"}
    labels = []
    for kind, name, template, claims in _pod_specs(docs):
        labels.append(template["metadata"]["labels"])
        spec = template["spec"]
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                ref = volume["configMap"]
                assert {i["key"] for i in ref.get("items", [])} <= config[ref["name"]], name
            if "secret" in volume:
                ref = volume["secret"]
                assert {i["key"] for i in ref.get("items", [])} <= secrets[ref["secretName"]], name
        for container in spec["containers"]:
            mounts = {m["name"] for m in container.get("volumeMounts", [])}
            declared = {v["name"] for v in spec.get("volumes", [])} | claims
            assert mounts <= declared, f"{name} mounts undeclared volumes {mounts - declared}"
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets[ref["name"]], f"{name}: {ref}"
            if container["image"].startswith("vmigrate"):
                parses(container["args"])
        if kind == "DaemonSet":
            env = {e["name"]: e for e in spec["containers"][0]["env"]}
            assert env["VMIGRATE_HOST"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
            assert "--host" not in spec["containers"][0]["args"]
    for service in (d for d in docs if d["kind"] == "Service"):
        selector = service["spec"]["selector"]
        assert any(selector.items() <= lab.items() for lab in labels), service["metadata"]["name"]


def test_systemd_units_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        missing_dependency("systemd-analyze is not installed (apt-get install systemd)")
    vmigrate = Path(sys.executable).with_name("vmigrate")
    redis_server = shutil.which("redis-server") or "/usr/bin/redis-server"
    units = []
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        text = unit.read_text().replace("/opt/vmigrate/bin/vmigrate", str(vmigrate))
        text = text.replace("/usr/bin/redis-server", redis_server)
        target = tmp_path / unit.name
        target.write_text(text)
        units.append(str(target))
        if "@" not in unit.name:
            assert "ExecStart=" in text and "NoNewPrivileges=yes" in text
    instance = str(tmp_path / "vmigrate-worker@hv01.service")
    Path(instance).symlink_to(tmp_path / "vmigrate-worker@.service")
    units = [u for u in units if not u.endswith("@.service")] + [instance]
    result = subprocess.run(
        [analyze, "verify", *units],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"},
    )
    assert result.returncode == 0, result.stderr
    assert "vmigrate" not in result.stderr, result.stderr
    worker = (DEPLOY / "systemd" / "vmigrate-worker@.service").read_text()
    assert "KillMode=process" in worker  # guests outlive a worker restart
