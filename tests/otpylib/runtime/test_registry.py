"""register / unregister / whereis / registered: one name per process, freed at death."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from runtime_support import (
    DEADLINE,
    NEVER_SPAWNED,
    exit_reason,
    idle,
    next_message,
    not_in_process,
    run_in,
    spawn_collector,
    watch,
)

from otpylib import process
from otpylib.runtime.atoms import atom
from otpylib.runtime.backends.asyncio_backend import AsyncIOBackend
from otpylib.runtime.errors import NameAlreadyRegistered, NotInProcessError, UnknownNameError


async def test_a_process_registers_itself(runtime: AsyncIOBackend) -> None:
    async def body() -> None:
        await process.register("me")
        assert process.whereis("me") == process.self()

    await run_in(runtime, body)


async def test_register_a_pid_from_main(runtime: AsyncIOBackend) -> None:
    pid = await runtime.spawn(idle)
    await runtime.register("svc", pid)
    assert runtime.whereis("svc") == pid
    assert runtime.registered() == ["svc"]
    assert runtime.process_info(pid).name == "svc"  # type: ignore[union-attr]
    assert runtime.statistics().registered_names == 1


async def test_register_without_a_pid_from_main_is_refused(runtime: AsyncIOBackend) -> None:
    with pytest.raises(
        NotInProcessError,
        match=not_in_process("register"),
    ):
        await runtime.register("svc")
    assert runtime.registered() == []


async def test_whereis_an_unknown_name_is_none(runtime: AsyncIOBackend) -> None:
    assert runtime.whereis("nobody") is None


async def test_registered_lists_every_name(runtime: AsyncIOBackend) -> None:
    for name in ["a", "b", "c"]:
        await runtime.spawn(idle, name=name)
    assert sorted(runtime.registered()) == ["a", "b", "c"]


async def test_registered_returns_a_copy(runtime: AsyncIOBackend) -> None:
    await runtime.spawn(idle, name="a")
    names = runtime.registered()
    names.clear()
    assert runtime.registered() == ["a"]


async def test_a_taken_name_cannot_be_registered_again(runtime: AsyncIOBackend) -> None:
    holder = await runtime.spawn(idle, name="svc")
    other = await runtime.spawn(idle)
    with pytest.raises(
        NameAlreadyRegistered,
        match=rf"^cannot register 'svc': the name is taken by {holder!r}; "
        r"unregister it first or choose another name$",
    ):
        await runtime.register("svc", other)
    assert runtime.whereis("svc") == holder
    assert runtime.process_info(other).name is None  # type: ignore[union-attr]


async def test_a_process_cannot_have_two_names(runtime: AsyncIOBackend) -> None:
    pid = await runtime.spawn(idle, name="first")
    with pytest.raises(
        NameAlreadyRegistered,
        match=rf"^cannot register {pid!r} as 'second': it is already registered as 'first' "
        r"\(a process has at most one name\)$",
    ):
        await runtime.register("second", pid)
    assert runtime.whereis("second") is None
    assert runtime.registered() == ["first"]


async def test_registering_the_same_name_for_the_same_process_is_a_no_op(
    runtime: AsyncIOBackend,
) -> None:
    # Differs from Erlang, where a second register/2 of the same pair is badarg.
    pid = await runtime.spawn(idle, name="svc")
    await runtime.register("svc", pid)
    assert runtime.whereis("svc") == pid
    assert runtime.statistics().registered_names == 1


async def test_registering_a_dead_pid_is_refused(runtime: AsyncIOBackend) -> None:
    with pytest.raises(
        ValueError,
        match=rf"^cannot register 'ghost': {NEVER_SPAWNED!r} is not a live local process$",
    ):
        await runtime.register("ghost", NEVER_SPAWNED)
    assert runtime.registered() == []


@pytest.mark.parametrize(
    ("bad", "shown"),
    [("", "''"), (None, "None"), (3, "3")],
)
async def test_a_name_must_be_a_non_empty_str(
    runtime: AsyncIOBackend, bad: object, shown: str
) -> None:
    pid = await runtime.spawn(idle)
    with pytest.raises(TypeError, match=rf"^registered names are non-empty str, got {shown}$"):
        await runtime.register(bad, pid)  # type: ignore[arg-type]
    assert runtime.registered() == []


async def test_unregister_frees_the_name_and_the_process_lives_on(
    runtime: AsyncIOBackend,
) -> None:
    pid = await runtime.spawn(idle, name="svc")
    await runtime.unregister("svc")
    assert runtime.whereis("svc") is None
    assert runtime.registered() == []
    assert runtime.is_alive(pid)
    assert runtime.process_info(pid).name is None  # type: ignore[union-attr]
    with pytest.raises(UnknownNameError):
        await runtime.send("svc", "gone")
    other = await runtime.spawn(idle)
    await runtime.register("svc", other)
    assert runtime.whereis("svc") == other
    # The first process may take a new name: it has none now.
    await runtime.register("old", pid)
    assert runtime.whereis("old") == pid


async def test_unregister_an_unknown_name_raises(runtime: AsyncIOBackend) -> None:
    with pytest.raises(
        UnknownNameError, match=r"^no process is registered as 'nobody'; nothing to unregister$"
    ):
        await runtime.unregister("nobody")


async def test_a_process_unregisters_itself(runtime: AsyncIOBackend) -> None:
    async def body() -> None:
        await process.register("temp")
        await process.unregister("temp")
        assert process.whereis("temp") is None

    await run_in(runtime, body)


@pytest.mark.parametrize("how", ["returns", "crashes", "is killed"])
async def test_the_name_of_a_dead_process_is_freed(runtime: AsyncIOBackend, how: str) -> None:
    end = asyncio.Event()

    async def body() -> None:
        await end.wait()
        if how == "crashes":
            raise RuntimeError("bye")

    pid = await runtime.spawn(body, name="svc")
    down = await watch(runtime, pid)
    if how == "is killed":
        await runtime.exit(pid, "kill")
    else:
        end.set()
    await exit_reason(down)
    assert runtime.whereis("svc") is None
    assert runtime.registered() == []
    assert runtime.statistics().registered_names == 0
    reborn = await runtime.spawn(idle, name="svc")
    assert runtime.whereis("svc") == reborn


async def test_a_name_is_freed_at_once_when_an_unstarted_process_is_killed(
    runtime: AsyncIOBackend,
) -> None:
    pid = await runtime.spawn(idle, name="svc")
    await runtime.exit(pid, "kill")
    assert runtime.whereis("svc") is None
    await runtime.spawn(idle, name="svc")


async def test_a_registered_name_reaches_the_process_that_holds_it_now(
    runtime: AsyncIOBackend,
) -> None:
    first, first_q = await spawn_collector(runtime, name="svc")
    await runtime.unregister("svc")
    _second, second_q = await spawn_collector(runtime, name="svc")
    await runtime.send("svc", "hello")
    assert await next_message(second_q) == "hello"
    await runtime.send(first, "direct")
    assert await next_message(first_q) == "direct"


# Bug: register() accepts an Atom as the name (and stores its text), but
# whereis() and send() look the Atom up as is, so the name is unreachable by
# the very value it was registered with.
async def test_a_name_registered_as_an_atom_is_found_by_the_atom(
    runtime: AsyncIOBackend,
) -> None:
    name = atom.ensure("atom_named_service")
    pid, queue = await spawn_collector(runtime)
    await runtime.register(name, pid)
    assert runtime.whereis(name) == pid
    await runtime.send(name, "hi")
    assert await asyncio.wait_for(queue.get(), DEADLINE) == "hi"


async def test_every_name_taking_function_accepts_the_atom_for_a_name(
    runtime: AsyncIOBackend,
) -> None:
    name = atom.ensure("atom_named_everywhere")
    pid, queue = await spawn_collector(runtime)
    await runtime.register(name, pid)
    assert runtime.registered() == ["atom_named_everywhere"]
    assert runtime.whereis("atom_named_everywhere") == pid
    await runtime.send((name, runtime.node_name), "pair")  # type: ignore[arg-type]
    assert runtime.send_nowait(name, "nowait") is True
    assert [await next_message(queue), await next_message(queue)] == ["pair", "nowait"]

    async def body() -> tuple[Any, Any]:
        ref = await process.monitor(name)
        assert process.whereis(name) == pid
        await process.unregister(name)
        return ref, await process.monitor(name)

    ref, ref_after = await run_in(runtime, body)
    assert ref != ref_after
    assert runtime.whereis(name) is None
    assert runtime.registered() == []
