"""The deployment files run as written: their command lines, executed, on loopback.

There is no Docker engine or cluster here, so each file's *commands* are
taken from the file and run for real: the image's entrypoint with its CMD
and its HEALTHCHECK, compose's commands and healthchecks, the Kubernetes
container's args and its exec probes, the systemd unit's ``ExecStart``
with its specifiers substituted. ``otpy-entrypoint`` is ``deploy/entrypoint.sh``
on ``PATH`` (the Dockerfile installs it under that name). What only the real
platform provides is stood in for and said so: the container's hostname
(``OTPY_HOST``), distinct ports for nodes that share this machine's loopback
(``OTPY_PORT``), and the loopback bind address (``OTPY_LISTEN``). Commands
that would use DNS or multicast run only inside the loopback-only namespace.
Every YAML file is parsed.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shlex
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from otpylib_dist.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
APP_DIR = DEPLOY / "app"  # the image's WORKDIR holds hello_app.py
DEADLINE = 30.0
COOKIE = "deploy-test-cookie"

pytestmark = pytest.mark.multiprocess


def parse_cli(argv: list[str]) -> Any:
    """Parse as ``otpy-node`` does (``run`` is the default subcommand)."""
    if not argv or argv[0] != "run":
        argv = ["run", *argv]
    return build_parser().parse_args(argv)


def parse_after_entrypoint(argv: list[str]) -> Any:
    """Parse what follows ``otpy-entrypoint`` (it adds ``--name``, ``--listen``, ``--port``)."""
    return parse_cli(["--name", "node@h", *argv])


def loopback_only() -> bool:
    """Whether this network namespace has no interface but loopback (scripts/netns-run)."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


needs_netns = pytest.mark.skipif(
    not loopback_only(), reason="uses DNS or multicast: runs only in the loopback-only namespace"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """``otpy-entrypoint`` and ``otpy-node`` as the image has them on PATH."""
    path = tmp_path / "bin"
    path.mkdir()
    (path / "otpy-entrypoint").symlink_to(DEPLOY / "entrypoint.sh")
    script = Path(sys.executable).with_name("otpy-node")
    if script.exists():
        (path / "otpy-node").symlink_to(script)
    else:
        wrapper = path / "otpy-node"
        wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m otpylib_dist.cli "$@"\n')
        wrapper.chmod(0o755)
    return path


@pytest.fixture
def cookie_file(tmp_path: Path) -> Path:
    path = tmp_path / "otpy_cookie"
    path.write_text(COOKIE + "\n")
    path.chmod(0o400)
    return path


def base_env(bin_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTPY_")}
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])
    env.update(extra)
    return env


class Running:
    """A command started from a deployment file; its output lines, read with deadlines."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path = APP_DIR) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.out = b""
        self.err = b""

    def wait_for(self, pattern: str) -> re.Match[str]:
        """Wait for a stdout line matching ``pattern``."""
        assert self.proc.stdout is not None and self.proc.stderr is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ, "out")
        sel.register(self.proc.stderr, selectors.EVENT_READ, "err")
        end = time.monotonic() + DEADLINE
        try:
            while True:
                match = re.search(pattern, self.out.decode(errors="replace"), re.M)
                if match:
                    return match
                left = end - time.monotonic()
                assert left > 0 and self.proc.poll() is None, (
                    f"{shlex.join(self.argv)}: no {pattern!r}; exit {self.proc.poll()}, "
                    f"stderr:\n{self.err.decode(errors='replace')}"
                )
                for key, _ in sel.select(min(left, 0.5)):
                    chunk = os.read(key.fileobj.fileno(), 65536)  # type: ignore[union-attr]
                    if key.data == "out":
                        self.out += chunk
                    else:
                        self.err += chunk
        finally:
            sel.close()

    def stop(self) -> int:
        """SIGTERM (what docker stop, kubelet and systemd send); the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(DEADLINE)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def running() -> Iterator[list[Running]]:
    """Everything a test starts; stopped at the end whatever happened."""
    started: list[Running] = []
    yield started
    for r in started:
        r.stop()


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env=env, cwd=APP_DIR, capture_output=True, text=True, timeout=DEADLINE, check=False
    )


def scrape(address: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=DEADLINE) as answer:
        text = answer.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


# ------------------------------------------------------------------ Dockerfile


def dockerfile() -> dict[str, Any]:
    """The Dockerfile's instructions that matter here, as data."""
    text = (DEPLOY / "Dockerfile").read_text()

    def json_of(instruction: str) -> Any:
        match = re.search(rf"^{instruction} (\[.*\])$", text, re.M)
        assert match is not None, f"no {instruction} [...] line"
        return json.loads(match.group(1))

    health = re.search(r"^HEALTHCHECK .*CMD (\[.*\])$", text, re.M)
    assert health is not None
    env = dict(re.findall(r"^ENV (\w+)=(\S+)$", text, re.M))
    return {
        "text": text,
        "entrypoint": json_of("ENTRYPOINT"),
        "cmd": json_of("CMD"),
        "healthcheck": json.loads(health.group(1)),
        "env": env,
    }


def test_dockerfile_installs_the_entrypoint_and_copies_an_application() -> None:
    image = dockerfile()
    text = image["text"]
    assert image["entrypoint"] == ["otpy-entrypoint"]
    assert "COPY deploy/entrypoint.sh /usr/local/bin/otpy-entrypoint\n" in text
    assert "COPY deploy/app/hello_app.py ./\n" in text
    # hatchling leaves a missing license file out of the wheel without a word.
    assert "COPY pyproject.toml README.md LICENSE ./\n" in text
    assert "pip install --no-cache-dir '.[uvloop,metrics]'" in text
    assert re.search(r"^EXPOSE 4370 9464$", text, re.M)
    assert image["healthcheck"] == ["otpy-entrypoint", "health"]
    args = parse_after_entrypoint(image["cmd"])
    assert args.run_fns == ["hello_app:start"]
    assert os.access(DEPLOY / "entrypoint.sh", os.X_OK)


def test_dockerignore_keeps_the_venv_git_and_caches_out_of_the_context() -> None:
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".git", "**/__pycache__", ".mypy_cache", ".pytest_cache"} <= patterns
    assert not {"otpylib", "otpylib_dist", "deploy", "pyproject.toml"} & patterns


@pytest.mark.parametrize("cookie_source", ["secret file", "OTPY_COOKIE"])
def test_the_image_runs_its_app_answers_its_healthcheck_and_serves_metrics(
    bin_dir: Path, cookie_file: Path, running: list[Running], cookie_source: str
) -> None:
    image = dockerfile()
    port, metrics = free_port(), free_port()
    stand_ins = {
        "OTPY_LISTEN": "127.0.0.1",  # the container's own interfaces are 0.0.0.0
        "OTPY_PORT": str(port),
        "OTPY_METRICS": f"127.0.0.1:{metrics}",
    }
    if not loopback_only():
        stand_ins["OTPY_HOST"] = "127.0.0.1"  # hostname -f may ask DNS
    if cookie_source == "secret file":
        stand_ins["OTPY_COOKIE_FILE"] = str(cookie_file)
    else:
        stand_ins["OTPY_COOKIE"] = COOKIE
        stand_ins["OTPY_COOKIE_FILE"] = str(cookie_file.with_name("absent"))
    env = base_env(bin_dir, **image["env"], **stand_ins)
    node = Running([*image["entrypoint"], *image["cmd"]], env)
    running.append(node)
    name = node.wait_for(r"^node (\S+) listening on (\d+)$").group(1)
    host = stand_ins.get("OTPY_HOST") or run(["hostname", "-f"], env).stdout.strip()
    assert name == f"node@{host}"
    health = run(image["healthcheck"], env)
    assert (health.returncode, health.stdout) == (0, "pong\n"), health.stderr
    ps = run(["otpy-entrypoint", "ps", "--sort", "name"], env)
    assert ps.returncode == 0, ps.stderr
    assert re.search(r"\bhello\b.*gen_server hello_app\.Hello$", ps.stdout, re.M), ps.stdout
    assert re.search(r"\bhello_sup\b.*supervisor one_for_one$", ps.stdout, re.M), ps.stdout
    samples = scrape(f"127.0.0.1:{metrics}")
    info = [dict(labels) for (metric, labels) in samples if metric == "otpy_node_info"]
    assert [i["node"] for i in info] == [name]
    assert node.stop() == 0
    health = run(image["healthcheck"], env)
    assert health.returncode == 1 and health.stdout == "pang\n"


def test_the_entrypoint_refuses_to_start_without_a_cookie(bin_dir: Path, tmp_path: Path) -> None:
    env = base_env(bin_dir, OTPY_COOKIE_FILE=str(tmp_path / "absent"), OTPY_HOST="127.0.0.1")
    for argv in (["otpy-entrypoint"], ["otpy-entrypoint", "health"]):
        done = run(argv, env)
        assert done.returncode == 2
        assert done.stderr == (
            f"otpy-entrypoint: no cookie: mount the cluster's secret at {tmp_path / 'absent'} "
            "(or set OTPY_COOKIE_FILE), or set OTPY_COOKIE; every node of a cluster needs "
            "the same one\n"
        )


def test_a_group_readable_secret_is_refused_in_one_line(
    bin_dir: Path, cookie_file: Path, running: list[Running]
) -> None:
    cookie_file.chmod(0o440)
    env = base_env(bin_dir, OTPY_COOKIE_FILE=str(cookie_file), OTPY_HOST="127.0.0.1")
    done = run(["otpy-entrypoint", "--port", "0"], env)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"otpy-node: cookie file {cookie_file} is readable by its group (mode 0440); "
        f"run chmod 400 {cookie_file}"
    ]


# --------------------------------------------------------------------- compose


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "compose" / "docker-compose.yml").read_text())
    return doc


def test_compose_has_three_healthchecked_nodes_one_secret_and_metrics_on_one_port() -> None:
    doc = compose()
    services = doc["services"]
    assert sorted(services) == ["alpha", "beta", "gamma"]
    assert doc["secrets"] == {"otpy_cookie": {"file": "./otpy_cookie"}}
    host_ports = set()
    for name, service in services.items():
        assert service["hostname"] == name
        assert service["environment"] == {"OTPY_NAME": name}
        assert service["secrets"] == ["otpy_cookie"]
        assert service["healthcheck"]["test"] == ["CMD", "otpy-entrypoint", "health"]
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        (published,) = service["ports"]
        address, host_port, container_port = published.split(":")
        assert (address, container_port) == ("127.0.0.1", "9464")
        host_ports.add(host_port)
        args = parse_after_entrypoint(service["command"])
        assert (args.discovery, args.run_fns, args.log_format) == (
            "mdns",
            ["hello_app:start"],
            "json",
        )
    assert len(host_ports) == 3
    text = (DEPLOY / "compose" / "docker-compose.yml").read_text()
    assert "chmod 400 deploy/compose/otpy_cookie" in text


@needs_netns
def test_compose_commands_form_a_cluster_and_pass_their_healthchecks(
    bin_dir: Path, cookie_file: Path, running: list[Running]
) -> None:
    services = compose()["services"]
    envs = {}
    for name, service in services.items():
        envs[name] = base_env(
            bin_dir,
            **service["environment"],
            OTPY_COOKIE_FILE=str(cookie_file),  # where compose mounts the secret
            OTPY_HOST="127.0.0.1",  # compose's DNS gives each container its service name
            OTPY_LISTEN="127.0.0.1",
            OTPY_PORT=str(free_port()),  # one loopback here, one network namespace each there
            OTPY_METRICS=f"127.0.0.1:{free_port()}",
        )
        node = Running(["otpy-entrypoint", *service["command"]], envs[name])
        running.append(node)
        node.wait_for(r"^node \S+ listening on \d+$")
    for name, service in services.items():
        check = service["healthcheck"]["test"][1:]
        end = time.monotonic() + DEADLINE
        while True:  # discovery (mDNS) meshes the three
            nodes = run(["otpy-entrypoint", "nodes"], envs[name]).stdout.split()
            if len(nodes) == 2:
                break
            assert time.monotonic() < end, f"{name} sees {nodes}"
            time.sleep(0.2)
        assert sorted(nodes) == sorted(f"{n}@127.0.0.1" for n in services if n != name)
        assert run(check, envs[name]).returncode == 0


# ------------------------------------------------------------------ Kubernetes


def kubernetes() -> tuple[str, dict[str, Any]]:
    text = (DEPLOY / "kubernetes" / "otpylib.yaml").read_text()
    return text, {d["kind"]: d for d in yaml.safe_load_all(text)}


def test_kubernetes_probes_ping_the_node_and_metrics_are_annotated() -> None:
    text, kinds = kubernetes()
    # No Secret: a cookie shipped in the file would be known to everyone who has it.
    assert set(kinds) == {"Service", "StatefulSet"}
    assert (
        "#   kubectl create secret generic otpy-cookie "
        "--from-literal=cookie=$(openssl rand -hex 32)\n" in text
    )
    service, sts = kinds["Service"], kinds["StatefulSet"]
    assert service["spec"]["clusterIP"] == "None"
    assert sts["spec"]["serviceName"] == service["metadata"]["name"]
    template = sts["spec"]["template"]
    (container,) = template["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(ports["metrics"])
    env = {e["name"]: e for e in container["env"]}
    assert env["OTPY_METRICS"]["value"] == f"0.0.0.0:{ports['metrics']}"
    assert env["OTPY_NAME"]["value"] == "$(POD_NAME)"
    assert env["OTPY_COOKIE"]["valueFrom"]["secretKeyRef"]["name"] == "otpy-cookie"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["exec"]["command"] == ["otpy-entrypoint", "health"], probe
        assert "tcpSocket" not in container[probe]
    args = parse_after_entrypoint([re.sub(r"\$\((\w+)\)", "x", a) for a in container["args"]])
    assert (args.discovery, args.run_fns) == ("dns", ["hello_app:start"])
    assert ports["otpy-dist"] == 4370  # the entrypoint's default OTPY_PORT


@needs_netns
def test_kubernetes_container_runs_and_its_probes_pass(
    bin_dir: Path, running: list[Running]
) -> None:
    _, kinds = kubernetes()
    (container,) = kinds["StatefulSet"]["spec"]["template"]["spec"]["containers"]
    # What the kubelet provides: the downward API values, the secret, $(VAR) expansion.
    values = {"POD_NAME": "otpy-0", "POD_NAMESPACE": "default", "OTPY_COOKIE": COOKIE}
    for item in container["env"]:
        if "value" in item:
            values[item["name"]] = re.sub(
                r"\$\((\w+)\)", lambda m: values[m.group(1)], item["value"]
            )
    argv = [re.sub(r"\$\((\w+)\)", lambda m: values[m.group(1)], a) for a in container["args"]]
    metrics = free_port()
    from_pod = {k: v for k, v in values.items() if k.startswith("OTPY_")}
    stand_ins = {
        "OTPY_HOST": "otpy-0.otpy.default.svc.cluster.local",  # the pod's `hostname -f`
        "OTPY_LISTEN": "127.0.0.1",
        "OTPY_PORT": str(free_port()),
        "OTPY_METRICS": f"127.0.0.1:{metrics}",
    }
    env = base_env(bin_dir, **{**from_pod, **stand_ins})
    node = Running(["otpy-entrypoint", *argv], env)
    running.append(node)
    name = node.wait_for(r"^node (\S+) listening on \d+$").group(1)
    assert name == "otpy-0@otpy-0.otpy.default.svc.cluster.local"
    for probe in ("readinessProbe", "livenessProbe"):
        done = run(container[probe]["exec"]["command"], env)
        assert done.returncode == 0, done.stderr
    assert scrape(f"127.0.0.1:{metrics}")[("otpy_processes", ())] >= 2
    assert node.stop() == 0


# --------------------------------------------------------------------- systemd


def systemd_unit() -> tuple[str, dict[str, dict[str, list[str]]]]:
    text = (DEPLOY / "systemd" / "otpy-node@.service").read_text()
    sections: dict[str, dict[str, list[str]]] = {}
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
        sections[current].setdefault(key, []).append(value)
    return text, sections


def test_systemd_unit_documents_its_install_and_restarts_on_failure() -> None:
    text, sections = systemd_unit()
    assert set(sections) == {"Unit", "Service", "Install"}
    service = sections["Service"]
    assert service["Restart"] == ["on-failure"]
    assert service["KillSignal"] == ["SIGTERM"]
    assert service["User"] == ["otpy"]
    assert service["EnvironmentFile"] == ["/etc/otpylib/%i.env"]
    for step in (
        "#   useradd --system --home-dir /opt/otpylib",
        "#   python3.11 -m venv /opt/otpylib/.venv",
        "#   chown otpy:otpy /etc/otpylib/cookie && chmod 0400 /etc/otpylib/cookie",
    ):
        assert step in text
    (exec_start,) = service["ExecStart"]
    argv = shlex.split(exec_start)
    assert argv[0] == "/opt/otpylib/.venv/bin/otpy-node"
    values = {"OTPY_HOST": "10.0.0.1", "OTPY_PORT": "4370", "OTPY_METRICS": "127.0.0.1:9464"}
    args = parse_cli(
        [
            re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], a.replace("%i", "alpha"))
            for a in argv[1:]
        ]
    )
    assert (args.name, args.port, args.metrics) == ("alpha@10.0.0.1", 4370, "127.0.0.1:9464")
    assert args.cookie_file == Path("/etc/otpylib/cookie")


@needs_netns
def test_systemd_exec_start_runs_with_its_substitutions(
    bin_dir: Path, cookie_file: Path, tmp_path: Path, running: list[Running]
) -> None:
    _, sections = systemd_unit()
    service = sections["Service"]
    (exec_start,) = service["ExecStart"]
    port, metrics = free_port(), free_port()
    # systemd: %i is the instance; ${VAR} from Environment= and the EnvironmentFile.
    environment = dict(e.split("=", 1) for e in service["Environment"])
    environment.update(
        OTPY_HOST="127.0.0.1", OTPY_PORT=str(port), OTPY_METRICS=f"127.0.0.1:{metrics}"
    )
    line = exec_start.replace("%i", "alpha")
    line = re.sub(r"\$\{(\w+)\}", lambda m: environment[m.group(1)], line)
    # The install: the venv's otpy-node, the cookie file (0400, the user's).
    line = line.replace("/opt/otpylib/.venv/bin/otpy-node", str(bin_dir / "otpy-node"))
    line = line.replace("/etc/otpylib/cookie", str(cookie_file))
    assert stat.S_IMODE(cookie_file.stat().st_mode) == 0o400
    node = Running(shlex.split(line), base_env(bin_dir), cwd=tmp_path)
    running.append(node)
    assert node.wait_for(r"^node (\S+) listening on (\d+)$").groups() == (
        "alpha@127.0.0.1",
        str(port),
    )
    ping = run(
        ["otpy-node", "ping", f"alpha@127.0.0.1:{port}", "--cookie-file", str(cookie_file)],
        base_env(bin_dir),
    )
    assert (ping.returncode, ping.stdout) == (0, "pong\n"), ping.stderr
    assert scrape(f"127.0.0.1:{metrics}")[("otpy_uptime_seconds", ())] > 0
    assert node.stop() == 0  # KillSignal=SIGTERM: a clean stop, so Restart=on-failure rests


def test_every_yaml_file_parses() -> None:
    found = sorted(DEPLOY.rglob("*.y*ml"))
    assert found, "no YAML under deploy/"
    for path in found:
        assert list(yaml.safe_load_all(path.read_text())), path


def test_docs_deploy_describes_each_file() -> None:
    text = (ROOT / "docs" / "deploy.md").read_text()
    for name in (
        "entrypoint.sh",
        "Dockerfile",
        "docker-compose.yml",
        "otpylib.yaml",
        "otpy-node@.service",
    ):
        assert name in text, name
