"""``--discovery mdns`` across OS processes on loopback: mesh, lookup, goodbye, name clash.

Every node and tool here uses ``--mdns-interface 127.0.0.1``; a cookie of the
test's own gives a cluster id nobody else announces.
"""

from __future__ import annotations

import asyncio
import re
import signal

import pytest
from cli_support import DEADLINE, StartNode, error_line, run_cli
from mdns_probe import group_listener, wait_for_responses

from otpylib_dist.cookie import cluster_id
from otpylib_dist.discovery import DiscoveryEvent, MdnsDiscovery, NodeAppeared, NodeDisappeared
from otpylib_dist.discovery.mdns import instance_name

pytestmark = [pytest.mark.multiprocess, pytest.mark.usefixtures("loopback_multicast")]

MDNS = ("--discovery", "mdns", "--mdns-interface", "127.0.0.1")


def test_three_nodes_form_a_full_mesh(start_node: StartNode, cookie: str) -> None:
    names = [f"m{i}@127.0.0.1" for i in range(3)]
    nodes = [start_node(name, *MDNS, "--log-level", "info") for name in names]
    for node in nodes:
        for other in set(names) - {node.name}:
            node.wait_for(rf'msg="nodeup {re.escape(other)} ', stream="stderr")
    for node in nodes:
        # Found by the tool through mDNS too: no address given.
        done = run_cli("nodes", node.name, *MDNS, "--cookie", cookie)
        assert done.returncode == 0, done.stderr
        assert sorted(done.stdout.split()) == sorted(set(names) - {node.name})


def test_ping_a_node_found_by_mdns_and_pang_for_one_that_is_not(
    start_node: StartNode, cookie: str
) -> None:
    node = start_node("seen@127.0.0.1", *MDNS)
    done = run_cli("ping", node.name, *MDNS, "--cookie", cookie)
    assert (done.returncode, done.stdout) == (0, "pong\n"), done.stderr
    missing = run_cli("ping", "unseen@127.0.0.1", *MDNS, "--cookie", cookie)
    assert (missing.returncode, missing.stdout) == (1, "pang\n")
    assert error_line(missing.stderr) == (
        "otpy-node: cannot connect to unseen@127.0.0.1: --discovery mdns did not find it; "
        "check that it runs, with the same cookie, where discovery can see it (or give "
        "NAME@HOST:PORT)"
    )


async def test_sigterm_withdraws_the_node_and_peers_see_nodedown(
    start_node: StartNode, cookie: str
) -> None:
    events: list[DiscoveryEvent] = []
    changed = asyncio.Event()

    def on_event(event: DiscoveryEvent) -> None:
        events.append(event)
        changed.set()

    async def wait_for(event: DiscoveryEvent) -> None:
        async with asyncio.timeout(DEADLINE):
            while event not in events:
                changed.clear()
                await changed.wait()

    watcher = MdnsDiscovery(cookie, interfaces=["127.0.0.1"], announce=False)
    watcher.subscribe(on_event)
    await watcher.start("watcher@127.0.0.1", "127.0.0.1", 1)
    try:
        leaving = start_node("leaving@127.0.0.1", *MDNS)
        staying = start_node("staying@127.0.0.1", *MDNS, "--log-level", "info")
        await wait_for(NodeAppeared(leaving.name, "127.0.0.1", leaving.port))
        await staying.wait_for_async(r'msg="nodeup leaving@127\.0\.0\.1 ', stream="stderr")
        leaving.signal(signal.SIGTERM)
        # Records live 120 s: seeing the node leave now means it said goodbye.
        await wait_for(NodeDisappeared(leaving.name))
        await staying.wait_for_async(
            r'msg="nodedown leaving@127\.0\.0\.1: connection_closed"', stream="stderr"
        )
        await staying.wait_for_async(r'msg="mDNS: leaving@127\.0\.0\.1 withdrew"', stream="stderr")
        assert await asyncio.to_thread(leaving.wait_exit) == 0
    finally:
        await watcher.stop()


def test_a_second_node_of_the_same_name_is_refused(start_node: StartNode, cookie: str) -> None:
    start_node("only@127.0.0.1", *MDNS)
    done = run_cli("--name", "only@127.0.0.1", *MDNS, "--cookie", cookie)
    assert done.returncode == 1
    assert error_line(done.stderr) == (
        "otpy-node: node only@127.0.0.1 is already announced by another node of this cluster "
        "on the network; node names must be unique, choose another --name"
    )
    assert done.stdout == ""


def test_a_same_name_node_started_seconds_later_is_refused(
    start_node: StartNode, cookie: str
) -> None:
    """Refused by the probe, not by a handshake: records multicast recently draw no unicast."""
    label = instance_name(cluster_id(cookie), "later@127.0.0.1").encode()
    with group_listener() as group:
        start_node("later@127.0.0.1", *MDNS)
        # Past the first node's announcements (three): seen on the wire.
        wait_for_responses(group, label, 3, DEADLINE)
    for _ in range(2):
        done = run_cli("--name", "later@127.0.0.1", *MDNS, "--cookie", cookie)
        assert done.returncode == 1, done.stderr
        assert error_line(done.stderr) == (
            "otpy-node: node later@127.0.0.1 is already announced by another node of this "
            "cluster on the network; node names must be unique, choose another --name"
        )
        assert done.stdout == ""
