"""The deployment files parse, and every command line in them is one otpy-node accepts."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from otpylib_dist.cli import build_parser

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def parse_cli(argv: list[str]) -> Any:
    """Parse as ``otpy-node`` does (``run`` is the default subcommand)."""
    return build_parser().parse_args(["run", *argv])


def test_compose_nodes_use_valid_command_lines() -> None:
    doc = yaml.safe_load((DEPLOY / "compose" / "docker-compose.yml").read_text())
    services = doc["services"]
    assert sorted(services) == ["alpha", "beta", "gamma"]
    for name, service in services.items():
        args = parse_cli(service["command"])
        assert args.name == f"{name}@{name}"
        assert args.port == 4370
        assert args.discovery == "mdns"
        assert "OTPY_COOKIE" in service["environment"]


def test_kubernetes_statefulset_and_headless_service() -> None:
    text = (DEPLOY / "kubernetes" / "otpylib.yaml").read_text()
    docs = list(yaml.safe_load_all(text))
    kinds = {d["kind"]: d for d in docs}
    # No Secret: a cookie shipped in the file would be known to everyone who has it.
    assert set(kinds) == {"Service", "StatefulSet"}
    assert (
        "#   kubectl create secret generic otpy-cookie "
        "--from-literal=cookie=$(openssl rand -hex 32)\n" in text
    )
    assert kinds["Service"]["spec"]["clusterIP"] == "None"
    sts = kinds["StatefulSet"]
    assert sts["spec"]["serviceName"] == kinds["Service"]["metadata"]["name"]
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    argv = [re.sub(r"\$\((\w+)\)", "x", a) for a in container["args"]]
    args = parse_cli(argv)
    assert args.discovery == "dns"
    assert args.port == container["ports"][0]["containerPort"]
    env = {e["name"]: e for e in container["env"]}
    assert env["OTPY_COOKIE"]["valueFrom"]["secretKeyRef"]["name"] == "otpy-cookie"


def test_systemd_unit_runs_a_valid_command_line() -> None:
    text = (DEPLOY / "systemd" / "otpy-node@.service").read_text()
    sections: dict[str, dict[str, str]] = {}
    current = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = {}
            continue
        key, _, value = line.partition("=")
        sections[current][key] = value
    assert set(sections) == {"Unit", "Service", "Install"}
    service = sections["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0].endswith("/otpy-node")
    # A template: the port comes from each instance's environment file, so two
    # instances on one host do not clash; without one, any free port.
    assert service["Environment"] == "OTPY_PORT=0"
    assert service["EnvironmentFile"] == "/etc/otpylib/%i.env"
    assert "#   OTPY_PORT=" in text
    for port in ("0", "4371"):
        args = parse_cli(
            [
                a.replace("%i", "alpha")
                .replace("${OTPY_HOST}", "10.0.0.1")
                .replace("${OTPY_PORT}", port)
                for a in argv[1:]
            ]
        )
        assert args.name == "alpha@10.0.0.1"
        assert args.port == int(port)
    assert service["KillSignal"] == "SIGTERM"


def test_dockerfile_entrypoint_is_otpy_node() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["otpy-node"]' in text
    cmd = re.search(r"^CMD (\[.*\])$", text, re.M)
    assert cmd is not None
    parse_cli(yaml.safe_load(cmd.group(1)))
