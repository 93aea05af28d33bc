"""MdnsDiscovery: several nodes in one process find each other over loopback multicast.

These tests run on the loopback interface only (``interfaces=["127.0.0.1"]``).
That needs ``lo`` to carry multicast, which ``scripts/netns-run`` arranges in
its private network namespace; elsewhere the tests skip, naming what is
missing, instead of waiting for packets that never come.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
from collections.abc import AsyncIterator, Callable

import pytest
from mdns_probe import group_listener, loopback_multicast_problem, wait_for_responses
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from otpylib_dist.cookie import cluster_id
from otpylib_dist.discovery import (
    Discovery,
    DiscoveryError,
    DiscoveryEvent,
    MdnsDiscovery,
    NodeAppeared,
    NodeDisappeared,
)
from otpylib_dist.discovery.mdns import _name_taken, instance_name


@pytest.fixture(scope="session")
def loopback_multicast() -> None:
    """Skip the test unless multicast datagrams loop back on 127.0.0.1."""
    problem = loopback_multicast_problem()
    if problem is not None:
        pytest.skip(problem)


#: Generous: loopback mDNS settles in well under a second (the probe takes 0.25 s);
#: this bounds a broken setup, it does not measure speed.
DEADLINE = 15.0

Factory = Callable[..., MdnsDiscovery]


class Watcher:
    """Collects one discovery's events and waits for them."""

    def __init__(self, disco: MdnsDiscovery) -> None:
        self.events: list[DiscoveryEvent] = []
        self._changed = asyncio.Event()
        disco.subscribe(self._on_event)

    def _on_event(self, event: DiscoveryEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(self, predicate: Callable[[list[DiscoveryEvent]], bool]) -> None:
        async with asyncio.timeout(DEADLINE):
            while not predicate(self.events):
                self._changed.clear()
                await self._changed.wait()

    def appeared(self) -> set[str]:
        return {e.name for e in self.events if isinstance(e, NodeAppeared)}


@pytest.fixture
async def make(loopback_multicast: None) -> AsyncIterator[Factory]:
    """Build MdnsDiscovery instances on loopback, on a service type of this test only."""
    service_type = f"_otpyt-{secrets.token_hex(3)}._tcp.local."
    made: list[MdnsDiscovery] = []

    def factory(cluster: str, **kwargs: object) -> MdnsDiscovery:
        disco = MdnsDiscovery(
            cluster=cluster,
            interfaces=["127.0.0.1"],
            service_type=service_type,
            **kwargs,  # type: ignore[arg-type]
        )
        made.append(disco)
        return disco

    try:
        yield factory
    finally:
        await asyncio.gather(*(d.stop() for d in made))


async def test_three_nodes_see_each_other_resolve_and_see_goodbyes(make: Factory) -> None:
    cluster = secrets.token_hex(8)
    discos = [make(cluster) for _ in range(3)]
    assert all(isinstance(d, Discovery) for d in discos)
    watchers = [Watcher(d) for d in discos]
    names = [f"n{i}@127.0.0.1" for i in range(3)]
    await asyncio.gather(
        *(
            d.start(name, "127.0.0.1", 41000 + i)
            for i, (d, name) in enumerate(zip(discos, names, strict=True))
        )
    )
    for i, watcher in enumerate(watchers):
        others = set(names) - {names[i]}
        await watcher.wait_for(lambda _e, w=watcher, o=others: w.appeared() == o)  # type: ignore[misc]
    assert NodeAppeared("n1@127.0.0.1", "127.0.0.1", 41001) in watchers[0].events
    assert await discos[0].resolve("n2@127.0.0.1") == ("127.0.0.1", 41002)
    assert discos[1].known_nodes() == {
        "n0@127.0.0.1": ("127.0.0.1", 41000),
        "n2@127.0.0.1": ("127.0.0.1", 41002),
    }

    await discos[2].stop()
    gone = NodeDisappeared("n2@127.0.0.1")
    for watcher in watchers[:2]:
        await watcher.wait_for(lambda events: gone in events)
    assert "n2@127.0.0.1" not in discos[0].known_nodes()


async def test_resolve_asks_the_network_for_a_node_not_yet_browsed(make: Factory) -> None:
    cluster = secrets.token_hex(8)
    server = make(cluster)
    await server.start("srv@127.0.0.1", "127.0.0.1", 42000)
    asker = make(cluster, announce=False)
    await asker.start("asker@127.0.0.1", "127.0.0.1", 1)
    assert await asker.resolve("srv@127.0.0.1", timeout=DEADLINE) == ("127.0.0.1", 42000)
    assert await asker.resolve("nobody@127.0.0.1", timeout=0.5) is None


async def test_a_tool_that_neither_announces_nor_browses_still_resolves(make: Factory) -> None:
    cluster = secrets.token_hex(8)
    server = make(cluster)
    await server.start("srv@127.0.0.1", "127.0.0.1", 42100)
    tool = make(cluster, announce=False, browse=False)
    watcher = Watcher(tool)
    await tool.start("tool@127.0.0.1", "127.0.0.1", 1)
    assert await tool.resolve("srv@127.0.0.1", timeout=DEADLINE) == ("127.0.0.1", 42100)
    assert tool.known_nodes() == {}
    assert watcher.events == []


async def test_nodes_of_another_cluster_are_ignored(make: Factory) -> None:
    outsider = make(secrets.token_hex(8))
    outsider_watch = Watcher(outsider)
    await outsider.start("x@127.0.0.1", "127.0.0.1", 43000)
    cluster = secrets.token_hex(8)
    a, b = make(cluster), make(cluster)
    watch_a = Watcher(a)
    await asyncio.gather(
        a.start("a@127.0.0.1", "127.0.0.1", 43001), b.start("b@127.0.0.1", "127.0.0.1", 43002)
    )
    await watch_a.wait_for(lambda _events: watch_a.appeared() == {"b@127.0.0.1"})
    # The outsider announced first, so a has long received its records too.
    assert a.known_nodes() == {"b@127.0.0.1": ("127.0.0.1", 43002)}
    assert outsider.known_nodes() == {}
    assert outsider_watch.events == []
    assert await a.resolve("x@127.0.0.1", timeout=0.5) is None


async def test_cookie_selects_the_cluster() -> None:
    assert MdnsDiscovery("secret").cluster == cluster_id("secret")


async def test_a_name_announced_twice_in_one_cluster_is_refused(make: Factory) -> None:
    cluster = secrets.token_hex(8)
    first = make(cluster)
    await first.start("dup@127.0.0.1", "127.0.0.1", 44000)
    second = make(cluster)
    with pytest.raises(
        DiscoveryError, match=r"^node dup@127\.0\.0\.1 is already announced by another node"
    ):
        await second.start("dup@127.0.0.1", "127.0.0.1", 44001)


def _drain(sock: socket.socket) -> list[bytes]:
    packets: list[bytes] = []
    with contextlib.suppress(BlockingIOError):
        while True:
            packets.append(sock.recv(9000))
    return packets


async def test_a_name_announced_seconds_ago_is_refused_too(make: Factory) -> None:
    """The probe draws a multicast answer even after the holder's announcements.

    A "QU" probe (unicast answer requested) is answered by unicast once the
    holder has multicast its records within a quarter of their TTL, and of
    the stacks sharing port 5353 on this host only one receives that: the
    asker, or not. A "QM" probe is answered by multicast, which all receive.
    """
    cluster = secrets.token_hex(8)
    label = instance_name(cluster, "late@127.0.0.1").encode()
    first = make(cluster)
    with group_listener() as group:
        await first.start("late@127.0.0.1", "127.0.0.1", 44100)
        # Past its announcements (three, 225 ms apart): seen on the wire.
        await asyncio.to_thread(wait_for_responses, group, label, 3, DEADLINE)
        # Twice within a second: the second probe must not be dropped as a repeat.
        for port in (44101, 44102):
            _drain(group)
            second = make(cluster)
            with pytest.raises(
                DiscoveryError, match=r"^node late@127\.0\.0\.1 is already announced"
            ):
                await second.start("late@127.0.0.1", "127.0.0.1", port)
            # The answer that made the probe fail came by multicast: the group got it too.
            answers = await asyncio.to_thread(wait_for_responses, group, label, 1, DEADLINE)
            assert answers, "the holder did not answer the probe by multicast"


async def test_an_engine_that_is_not_running_is_a_discovery_error(
    loopback_multicast: None,
) -> None:
    aiozc = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    await aiozc.async_close()
    info = AsyncServiceInfo(
        "_otpyt-closed._tcp.local.", "x._otpyt-closed._tcp.local.", port=1, server="x.local."
    )
    with pytest.raises(DiscoveryError, match=r"^the mDNS engine did not start; check that UDP"):
        await _name_taken(aiozc.zeroconf, info)


def test_instance_names_fit_a_dns_label() -> None:
    long_short = "n" * 63
    label = instance_name("c" * 16, f"{long_short}@127.0.0.1")
    assert len(label.encode()) <= 63
    assert label.startswith("n" * 50)
    assert instance_name("c1", "a@h") != instance_name("c2", "a@h")
    assert instance_name("c1", "a@h1") != instance_name("c1", "a@h2")


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(DiscoveryError, match=r"^MdnsDiscovery needs exactly one of cookie= "):
        MdnsDiscovery()
    with pytest.raises(DiscoveryError, match=r"^MdnsDiscovery needs exactly one of cookie= "):
        MdnsDiscovery("c", cluster="x")
    with pytest.raises(DiscoveryError, match=r"is not a DNS-SD service type"):
        MdnsDiscovery(cluster="x", service_type="otpylib.local.")


async def test_bad_node_names_and_early_resolve_are_refused() -> None:
    disco = MdnsDiscovery(cluster="x", interfaces=["127.0.0.1"])
    with pytest.raises(DiscoveryError, match=r"^cannot announce 'no-host' over mDNS: "):
        await disco.start("no-host", "127.0.0.1", 1)
    with pytest.raises(DiscoveryError, match=r"^MdnsDiscovery\.resolve\(\) needs start\(\) first$"):
        await disco.resolve("a@127.0.0.1")
    with pytest.raises(DiscoveryError, match=r"is too long to announce over mDNS"):
        await disco.start("a@" + ".".join(["h" * 62] * 4), "127.0.0.1", 1)
    await disco.stop()
