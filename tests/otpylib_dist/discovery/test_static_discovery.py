"""StaticDiscovery: parsing entries, clear errors, events and resolution."""

from __future__ import annotations

import pytest

from otpylib_dist.discovery import (
    Discovery,
    DiscoveryError,
    DiscoveryEvent,
    NodeAppeared,
    StaticDiscovery,
)
from otpylib_dist.discovery.static import parse_static_entry


@pytest.mark.parametrize(
    ("entry", "parsed"),
    [
        ("a@127.0.0.1:4370", ("a@127.0.0.1", "127.0.0.1", 4370)),
        ("  node_2@box.example.com:1\n", ("node_2@box.example.com", "box.example.com", 1)),
        ("x-y@localhost:65535", ("x-y@localhost", "localhost", 65535)),
    ],
)
def test_parses_name_host_port(entry: str, parsed: tuple[str, str, int]) -> None:
    assert parse_static_entry(entry) == parsed


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("a@127.0.0.1", r"^static entry 'a@127\.0\.0\.1' is not 'name@host:port'; write e\.g\. "),
        ("127.0.0.1:4370", r"^static entry '127\.0\.0\.1:4370' is not 'name@host:port'; "),
        ("a@127.0.0.1:http", r"^static entry 'a@127\.0\.0\.1:http': port 'http' is not a number "),
        ("a@127.0.0.1:0", r"^static entry 'a@127\.0\.0\.1:0': port '0' is not a number from 1 "),
        ("a@127.0.0.1:70000", r"port '70000' is not a number from 1 to 65535$"),
        ("a@127.0.0.1:-1", r"port '-1' is not a number"),
        ("a b@127.0.0.1:1", r"^static entry 'a b@127\.0\.0\.1:1': node name 'a b@127\.0\.0\.1'"),
        ("a@b@c:1", r"^static entry 'a@b@c:1': "),
        ("", r"^static entry '' is not 'name@host:port'"),
    ],
)
def test_bad_entries_are_refused_with_the_expected_form(entry: str, message: str) -> None:
    with pytest.raises(DiscoveryError, match=message):
        parse_static_entry(entry)


def test_conflicting_duplicate_is_refused() -> None:
    with pytest.raises(DiscoveryError, match=r"^static entries list a@h twice, at port 1 and 2"):
        StaticDiscovery(["a@h:1", "a@h:2"])


def test_identical_duplicate_is_accepted() -> None:
    assert StaticDiscovery(["a@h:1", "a@h:1"]).nodes == {"a@h": ("h", 1)}


async def test_start_reports_every_other_node_and_resolve_answers() -> None:
    disco = StaticDiscovery(["a@127.0.0.1:1001", "b@127.0.0.1:1002", "c@127.0.0.1:1003"])
    assert isinstance(disco, Discovery)
    seen: list[DiscoveryEvent] = []
    disco.subscribe(seen.append)
    await disco.start("b@127.0.0.1", "127.0.0.1", 1002)
    assert seen == [
        NodeAppeared("a@127.0.0.1", "127.0.0.1", 1001),
        NodeAppeared("c@127.0.0.1", "127.0.0.1", 1003),
    ]
    assert await disco.resolve("c@127.0.0.1") == ("127.0.0.1", 1003)
    assert await disco.resolve("z@127.0.0.1") is None
    await disco.stop()
    await disco.stop()


async def test_unsubscribe_and_a_failing_subscriber_do_not_break_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    disco = StaticDiscovery(["a@127.0.0.1:1001"])
    seen: list[DiscoveryEvent] = []
    dropped: list[DiscoveryEvent] = []

    def broken(event: DiscoveryEvent) -> None:
        raise RuntimeError("subscriber bug")

    disco.subscribe(broken)
    unsubscribe = disco.subscribe(dropped.append)
    disco.subscribe(seen.append)
    unsubscribe()
    await disco.start("me@127.0.0.1", "127.0.0.1", 1)
    assert seen == [NodeAppeared("a@127.0.0.1", "127.0.0.1", 1001)]
    assert dropped == []
    assert "discovery subscriber" in caplog.text
