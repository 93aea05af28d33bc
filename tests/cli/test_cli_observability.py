"""``otpy-node`` observability end to end: ps labels and sorting, top, JSON logs, --metrics.

Nodes run as real OS processes (``obs_procs.main``: a supervisor over a
gen_server, a process fed 1,000 messages a second that reads none, an idle
one); ``top``'s live view runs in a real terminal (a pty, and tmux when
installed).
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from cli_support import DEADLINE, NodeProcess, StartNode, child_env, cli_command, run_cli
from prometheus_client.parser import text_string_to_metric_families

from otpylib_dist.cli import main

pytestmark = pytest.mark.multiprocess


def _ps_rows(*args: str, cookie: str) -> tuple[str, list[str]]:
    done = run_cli("ps", *args, "--cookie", cookie)
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    return header, rows


def _wait_for_ps(node: NodeProcess, cookie: str, want: str, *target: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while want not in run_cli("ps", *(target or (node.address,)), "--cookie", cookie).stdout:
        assert time.monotonic() < deadline, f"ps never showed {want!r}"
        time.sleep(0.1)


def _column(header: str, rows: list[str], name: str) -> list[str]:
    """The cells of column ``name``, cut at the header's positions (as a reader's eye does)."""
    start = header.index(name)
    following = [m.start() for m in re.finditer(r"\S+", header) if m.start() > start]
    end = following[0] if following else None
    return [row[start:end].strip() for row in rows]


def test_ps_shows_behaviours_and_sorts_by_queue_messages_and_name(
    start_node: StartNode, cookie: str
) -> None:
    node = start_node("obs@127.0.0.1", "--run", "obs_procs:main")
    _wait_for_ps(node, cookie, "feeder")
    header, rows = _ps_rows(node.address, "--sort", "queue", cookie=cookie)
    runs = dict(zip(_column(header, rows, "NAME"), _column(header, rows, "RUNS"), strict=True))
    assert runs["counter"] == "gen_server obs_procs.Counter"
    assert runs["top_sup"] == "supervisor one_for_all"
    assert runs["busy"] == "obs_procs.busy"
    assert _column(header, rows, "NAME")[0] == "busy"
    queues = [int(q) for q in _column(header, rows, "QUEUE")]
    assert queues == sorted(queues, reverse=True) and queues[0] > 0
    header, rows = _ps_rows(node.address, "--sort", "messages", cookie=cookie)
    assert _column(header, rows, "NAME")[0] == "busy"
    header, rows = _ps_rows(node.address, "--sort", "name", cookie=cookie)
    assert _column(header, rows, "NAME")[:5] == ["busy", "counter", "feeder", "quiet", "top_sup"]
    listed = json.loads(run_cli("ps", node.address, "--cookie", cookie, "--json").stdout)
    (counter,) = [r for r in listed if r["name"] == "counter"]
    assert counter["label"] == "gen_server obs_procs.Counter"
    assert counter["function"] == "otpylib._gen_server_loop.serve"
    (busy,) = [r for r in listed if r["name"] == "busy"]
    assert busy["messages"] >= busy["message_queue_len"] > 0


def test_ps_columns_fit_kubernetes_length_node_names(start_node: StartNode, cookie: str) -> None:
    long_name = "worker@worker-0.worker.production-eu-west-1.svc.cluster.local"
    node = start_node(long_name, "--listen", "127.0.0.1", "--run", "obs_procs:main")
    target = (long_name, "--address", f"127.0.0.1:{node.port}")
    _wait_for_ps(node, cookie, "feeder", *target)
    header, rows = _ps_rows(*target, cookie=cookie)
    assert header.split() == ["PID", "NAME", "STATE", "QUEUE", "MESSAGES", "RUNS"]
    pids = _column(header, rows, "PID")
    assert all(p.startswith(f"<{long_name}.") and p.endswith(">") for p in pids), pids
    assert set(_column(header, rows, "STATE")) <= {"waiting", "running", "exiting"}
    assert all(q.isdigit() for q in _column(header, rows, "QUEUE"))


def _top_frame(text: str) -> list[str]:
    """The last complete screen of top's output (frames start with clear-screen)."""
    frames = text.split("\x1b[H\x1b[2J")
    complete = [f for f in frames[1:] if "PID" in f and f.endswith("\n")]
    return complete[-1].splitlines() if complete else []


def _first_process(lines: list[str]) -> tuple[str, str] | None:
    """(NAME, MSG/S) of the first row under top's process header, if drawn."""
    for i, line in enumerate(lines):
        if line.split()[:4] == ["PID", "NAME", "QUEUE", "MSG/S"] and i + 1 < len(lines):
            cells = _column(line, lines[i + 1 : i + 2], "NAME")
            rates = _column(line, lines[i + 1 : i + 2], "MSG/S")
            return cells[0], rates[0]
    return None


def test_top_once_shows_the_busy_process_first(start_node: StartNode, cookie: str) -> None:
    node = start_node("obs@127.0.0.1", "--run", "obs_procs:main")
    _wait_for_ps(node, cookie, "feeder")
    done = run_cli("top", node.address, "--cookie", cookie, "--once", "--interval", "0.5")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("obs@127.0.0.1  up ")
    assert lines[1].startswith("event loop lag ")
    first = _first_process(lines)
    assert first is not None, done.stdout
    name, rate = first
    assert name == "busy" and int(rate) > 0, done.stdout
    snapshot = json.loads(run_cli("top", node.address, "--cookie", cookie, "--json").stdout)
    assert snapshot["statistics"]["node"] == node.name
    assert {r["name"] for r in snapshot["processes"]} >= {"busy", "counter", "top_sup"}


def test_top_live_view_in_a_pty_refreshes_and_quits_on_q(
    start_node: StartNode, cookie: str
) -> None:
    node = start_node("obs@127.0.0.1", "--run", "obs_procs:main")
    _wait_for_ps(node, cookie, "feeder")
    primary, secondary = os.openpty()
    env = child_env(COLUMNS="140", LINES="40", TERM="xterm")
    top = subprocess.Popen(
        [*cli_command(), "top", node.address, "--cookie", cookie, "--interval", "0.3"],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=env,
        start_new_session=True,
    )
    os.close(secondary)
    out = b""
    try:
        deadline = time.monotonic() + DEADLINE
        frames_with_rate = 0
        while frames_with_rate < 2:
            assert time.monotonic() < deadline, out.decode(errors="replace")[-3000:]
            ready, _, _ = select.select([primary], [], [], 0.5)
            if ready:
                out += os.read(primary, 65536)
            first = _first_process(_top_frame(out.decode(errors="replace")))
            if first is not None and first[0] == "busy" and first[1] not in ("-", "0"):
                frames_with_rate = out.count(b"\x1b[H\x1b[2J")
        assert b"\x1b[?1049h" in out  # the alternate screen: scrollback is left alone
        os.write(primary, b"q")
        assert top.wait(DEADLINE) == 0
        try:
            while select.select([primary], [], [], 0.2)[0]:
                out += os.read(primary, 65536)
        except OSError:
            pass  # the pty closed with the child
        assert out.rstrip().endswith(b"\x1b[?1049l"), out[-200:]  # terminal restored
    finally:
        if top.poll() is None:
            top.kill()
            top.wait()
        os.close(primary)


@pytest.mark.parametrize("key", ["q", "C-c"])
def test_top_live_view_in_tmux(
    start_node: StartNode, cookie: str, tmp_path: Path, key: str
) -> None:
    tmux = shutil.which("tmux")
    if tmux is None:
        pytest.skip("tmux is not installed (apt-get install -y tmux)")
    node = start_node("obs@127.0.0.1", "--run", "obs_procs:main")
    _wait_for_ps(node, cookie, "feeder")
    socket = str(tmp_path / "tmux.sock")
    base = [tmux, "-S", socket]
    env = child_env()
    command = " ".join(
        [*cli_command(), "top", node.address, "--cookie", cookie, "--interval", "0.3"]
    )
    marker = tmp_path / "exit-code"
    subprocess.run(
        [*base, "new-session", "-d", "-x", "150", "-y", "40", f"{command}; echo $? > {marker}"],
        env=env,
        check=True,
        timeout=DEADLINE,
    )
    try:
        deadline = time.monotonic() + DEADLINE
        while True:
            screen = subprocess.run(
                [*base, "capture-pane", "-p"], capture_output=True, text=True, timeout=DEADLINE
            ).stdout
            first = _first_process(screen.splitlines())
            if first is not None and first[0] == "busy" and first[1] not in ("-", "0"):
                break
            assert time.monotonic() < deadline, screen
            time.sleep(0.2)
        subprocess.run([*base, "send-keys", key], check=True, timeout=DEADLINE)
        while not (marker.exists() and marker.read_text().strip()):
            assert time.monotonic() < deadline + DEADLINE, f"top did not quit on {key}"
            time.sleep(0.1)
        assert marker.read_text().strip() == "0"
    finally:
        subprocess.run([*base, "kill-server"], capture_output=True, timeout=DEADLINE)


def test_json_logs_carry_fields_metrics_serve_and_cli_calls_stay_quiet(
    start_node: StartNode, cookie: str
) -> None:
    a = start_node(
        "a@127.0.0.1",
        "--log-level",
        "info",
        "--log-format",
        "json",
        "--metrics",
        "127.0.0.1:0",
    )
    metrics = a.wait_for(r'"event": "metrics_listening"', stream="stderr")
    url = re.search(r"(http://127\.0\.0\.1:\d+/metrics)", metrics.string)
    assert url is not None
    for _ in range(2):
        assert run_cli("ping", a.address, "--cookie", cookie).stdout == "pong\n"
    b = start_node("b@127.0.0.1", "--connect", a.address)
    a.wait_for(r'"event": "nodeup"', stream="stderr")
    with urllib.request.urlopen(url.group(1), timeout=DEADLINE) as answer:
        text = answer.read().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("otpy_peer_connection_state", (("peer", b.name), ("state", "up")))] == 1
    assert samples[("otpy_nodeups_total", ())] == 3  # two hidden CLI nodes, then b
    b.signal(signal.SIGTERM)
    assert b.wait_exit() == 0
    a.wait_for(r'"event": "nodedown"', stream="stderr")
    a.signal(signal.SIGTERM)
    assert a.wait_exit() == 0
    records = [json.loads(line) for line in a.stderr if line.strip()]
    assert all({"time", "level", "logger", "msg", "node"} <= set(r) for r in records)
    assert all(r["node"] == a.name for r in records)
    events = [
        (r["event"], r.get("peer")) for r in records if r.get("event") in ("nodeup", "nodedown")
    ]
    # The CLI's hidden nodes came and went at debug: only b is logged.
    assert events == [("nodeup", b.name), ("nodedown", b.name)], events
    (down,) = [r for r in records if r.get("event") == "nodedown"]
    assert down["reason"] == "connection_closed" and down["level"] == "info"
    (listening,) = [r for r in records if r.get("event") == "listening"]
    assert listening["address"] == f"127.0.0.1:{a.port}"


def test_metrics_without_prometheus_client_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import now fails
    code = main(["run", "--name", "m@127.0.0.1", "--cookie", "c", "--metrics", "127.0.0.1:0"])
    assert code == 2
    assert capsys.readouterr().err == (
        "otpy-node: --metrics needs prometheus_client, which is not installed; "
        "pip install 'otpylib[metrics]'\n"
    )


@pytest.mark.parametrize("bad", ["9464", "host:", ":9464", "h:99999"])
def test_a_bad_metrics_address_is_one_line(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--name", "m@127.0.0.1", "--cookie", "c", "--metrics", bad])
    assert code == 2
    assert capsys.readouterr().err == (
        f"otpy-node: --metrics {bad!r} is not HOST:PORT, e.g. 0.0.0.0:9464\n"
    )
