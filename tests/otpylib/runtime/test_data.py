"""Pid, Ref and the introspection records: immutable values, equal by value."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from otpylib.runtime.data import LOCAL_NODE, Pid, ProcessInfo, Ref, RuntimeStatistics

nodes = st.text(min_size=1, max_size=40)
ids = st.integers(min_value=0, max_value=2**63 - 1)
creations = st.integers(min_value=0, max_value=2**32 - 1)


def test_local_node_name_is_erlangs_nonode_at_nohost() -> None:
    assert LOCAL_NODE == "nonode@nohost"


@pytest.mark.parametrize("kind", [Pid, Ref])
def test_equal_fields_make_equal_values_with_equal_hashes(kind: type[Pid] | type[Ref]) -> None:
    a = kind(LOCAL_NODE, 7, 0)
    b = kind(LOCAL_NODE, 7, 0)
    assert a is not b
    assert a == b
    assert hash(a) == hash(b)
    assert {a: "found"}[b] == "found"
    assert len({a, b}) == 1


@pytest.mark.parametrize("kind", [Pid, Ref])
@pytest.mark.parametrize(
    "other",
    [("a@host", 7, 0), (LOCAL_NODE, 8, 0), (LOCAL_NODE, 7, 1)],
    ids=["node", "id", "creation"],
)
def test_any_differing_field_makes_values_differ(
    kind: type[Pid] | type[Ref], other: tuple[str, int, int]
) -> None:
    assert kind(LOCAL_NODE, 7, 0) != kind(*other)


def test_a_pid_never_equals_a_ref_with_the_same_fields() -> None:
    assert Pid(LOCAL_NODE, 1, 0) != Ref(LOCAL_NODE, 1, 0)
    assert len({Pid(LOCAL_NODE, 1, 0), Ref(LOCAL_NODE, 1, 0)}) == 2


def test_pid_repr_is_erlang_style_and_names_a_foreign_node() -> None:
    assert repr(Pid(LOCAL_NODE, 5, 0)) == "<0.5.0>"
    assert repr(Pid("b@host2", 5, 3)) == "<b@host2.5.3>"
    assert str(Pid(LOCAL_NODE, 12, 1)) == "<0.12.1>"


def test_ref_repr_names_node_id_and_creation() -> None:
    assert repr(Ref(LOCAL_NODE, 3, 0)) == "#Ref<nonode@nohost.3.0>"
    assert str(Ref("a@h", 9, 2)) == "#Ref<a@h.9.2>"


@pytest.mark.parametrize("value", [Pid(LOCAL_NODE, 1, 0), Ref(LOCAL_NODE, 1, 0)])
def test_pids_and_refs_are_immutable(value: Pid | Ref) -> None:
    with pytest.raises(AttributeError):
        value.id = 2  # type: ignore[misc]
    assert value.id == 1


def test_pids_and_refs_are_not_ordered() -> None:
    # Erlang orders pids, but nothing here may depend on an order of spawning.
    with pytest.raises(TypeError):
        _ = Pid(LOCAL_NODE, 1, 0) < Pid(LOCAL_NODE, 2, 0)  # type: ignore[operator]


def test_pid_travels_as_a_three_element_array() -> None:
    pid = Pid("a@h", 4, 2)
    wire = msgspec.msgpack.encode(pid)
    assert wire == msgspec.msgpack.encode(["a@h", 4, 2])
    assert msgspec.msgpack.decode(wire, type=Pid) == pid


@given(nodes, ids, creations)
def test_any_pid_and_ref_round_trip_and_hash_by_value(node: str, id_: int, creation: int) -> None:
    for kind in (Pid, Ref):
        value = kind(node, id_, creation)
        back = msgspec.msgpack.decode(msgspec.msgpack.encode(value), type=kind)
        assert back == value
        assert hash(back) == hash(value)
        assert type(back) is kind


def test_process_info_is_a_frozen_record() -> None:
    info = ProcessInfo(
        pid=Pid(LOCAL_NODE, 1, 0),
        state="running",
        name=None,
        created_at=0.0,
        trap_exits=False,
        message_queue_len=0,
        links=(),
        monitors=(),
        monitored_by=(),
        function="m.f",
    )
    with pytest.raises(AttributeError):
        info.state = "waiting"  # type: ignore[misc]


def test_runtime_statistics_is_a_frozen_record() -> None:
    stats = RuntimeStatistics(
        uptime_seconds=1.0,
        total_spawned=0,
        active_processes=0,
        messages_processed=0,
        active_monitors=0,
        active_links=0,
        registered_names=0,
    )
    with pytest.raises(AttributeError):
        stats.active_links = 1  # type: ignore[misc]
