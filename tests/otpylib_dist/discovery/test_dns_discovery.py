"""DnsDiscovery against a fake DNS server on 127.0.0.1 (UDP, TCP fallback, polling)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from dns_fake import FakeDns

from otpylib_dist.discovery import (
    DiscoveryError,
    DiscoveryEvent,
    DnsDiscovery,
    NodeAppeared,
    NodeDisappeared,
)
from otpylib_dist.discovery.dns import query_srv, system_nameserver

SERVICE = "otpy.ns.svc.cluster.local"
POD = "otpy-{}.otpy.ns.svc.cluster.local"
#: Generous: every answer is local; this only bounds a broken test.
DEADLINE = 10.0


def k8s_records(fake: FakeDns, pods: range) -> None:
    """What cluster DNS serves for a StatefulSet: SRV per pod, A records in additional."""
    fake.srv = [(0, 100, 4370, POD.format(i)) for i in pods]
    fake.a_records = {POD.format(i): f"10.0.0.{i + 1}" for i in pods}


async def test_members_follow_the_statefulset_naming() -> None:
    async with FakeDns() as fake:
        k8s_records(fake, range(3))
        disco = DnsDiscovery(SERVICE, nameserver=fake.address)
        assert disco.srv_name == "_otpy-dist._tcp.otpy.ns.svc.cluster.local"
        assert await disco.members() == {
            f"otpy-{i}@{POD.format(i)}": (POD.format(i), 4370) for i in range(3)
        }


async def test_resolve_uses_srv_port_and_a_records_from_the_answer() -> None:
    async with FakeDns() as fake:
        k8s_records(fake, range(3))
        disco = DnsDiscovery(SERVICE, nameserver=fake.address)
        assert await disco.resolve(f"otpy-1@{POD.format(1)}") == ("10.0.0.2", 4370)
        assert await disco.resolve(f"otpy-7@{POD.format(7)}") is None


async def test_resolve_falls_back_to_getaddrinfo_for_the_address() -> None:
    # Numeric targets resolve locally, with no DNS traffic.
    async with FakeDns() as fake:
        fake.srv = [(0, 0, 5001, "127.0.0.11"), (0, 0, 5002, "127.0.0.12")]
        disco = DnsDiscovery(SERVICE, nameserver=fake.address, node_short_name="n")
        assert await disco.members() == {
            "n@127.0.0.11": ("127.0.0.11", 5001),
            "n@127.0.0.12": ("127.0.0.12", 5002),
        }
        assert await disco.resolve("n@127.0.0.12") == ("127.0.0.12", 5002)


async def test_fixed_port_is_used_when_srv_has_no_records() -> None:
    async with FakeDns() as fake:
        fake.rcode = 3  # NXDOMAIN: a service port without a name has no SRV records
        disco = DnsDiscovery(SERVICE, nameserver=fake.address, port=4370)
        assert await disco.members() == {}
        assert await disco.resolve("n@127.0.0.5") == ("127.0.0.5", 4370)


async def test_truncated_udp_answer_is_asked_again_over_tcp() -> None:
    async with FakeDns(truncate_udp=True) as fake:
        k8s_records(fake, range(2))
        response = await query_srv(f"_otpy-dist._tcp.{SERVICE}", fake.address, DEADLINE)
        assert not response.truncated
        assert [r.port for r in response.srv] == [4370, 4370]
        assert len(fake.queries) == 2


async def test_silent_server_is_a_clear_error() -> None:
    async with FakeDns(silent=True) as fake:
        disco = DnsDiscovery(SERVICE, nameserver=fake.address, timeout=0.3)
        with pytest.raises(
            DiscoveryError,
            match=rf"^DNS server 127\.0\.0\.1:{fake.port} did not answer for "
            rf"_otpy-dist\._tcp\.{SERVICE} within 0\.3 s$",
        ):
            await disco.members()


async def test_resolve_with_a_silent_server_is_none_and_one_reason() -> None:
    # Regression: resolve raised, and the node logged the traceback in its log line.
    async with FakeDns(silent=True) as fake:
        disco = DnsDiscovery(SERVICE, nameserver=fake.address, timeout=0.3)
        assert await disco.resolve("otpy-0@" + POD.format(0), timeout=1.0) is None
        assert disco.resolve_failure("otpy-0@" + POD.format(0)) == (
            f"DNS did not answer for otpy-0@{POD.format(0)} within 1 s (nameserver "
            f"127.0.0.1:{fake.port})"
        )


async def test_server_failure_code_is_reported() -> None:
    async with FakeDns() as fake:
        fake.rcode = 2  # SERVFAIL
        disco = DnsDiscovery(SERVICE, nameserver=fake.address)
        with pytest.raises(DiscoveryError, match=r"answered .* with error code 2$"):
            await disco.members()


async def test_polling_reports_pods_joining_and_leaving_but_not_itself() -> None:
    events: asyncio.Queue[DiscoveryEvent] = asyncio.Queue()
    async with FakeDns() as fake:
        k8s_records(fake, range(3))
        disco = DnsDiscovery(SERVICE, nameserver=fake.address, poll_interval=0.05)
        disco.subscribe(events.put_nowait)
        me = f"otpy-0@{POD.format(0)}"
        await disco.start(me, POD.format(0), 4370)
        try:
            first = {await asyncio.wait_for(events.get(), DEADLINE) for _ in range(2)}
            assert first == {
                NodeAppeared(f"otpy-{i}@{POD.format(i)}", POD.format(i), 4370) for i in (1, 2)
            }
            k8s_records(fake, range(2))  # otpy-2 scaled away
            gone = await asyncio.wait_for(events.get(), DEADLINE)
            assert gone == NodeDisappeared(f"otpy-2@{POD.format(2)}")
        finally:
            await disco.stop()


def test_system_nameserver_reads_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# k8s\nsearch ns.svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n")
    assert system_nameserver(conf) == ("10.96.0.10", 53)
    conf.write_text("search x\n")
    with pytest.raises(DiscoveryError, match=r"names no nameserver; pass nameserver=$"):
        system_nameserver(conf)
