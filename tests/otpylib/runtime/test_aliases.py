"""alias / unalias: an extra address for a mailbox that can be closed (Erlang's ``alias/0``).

gen_server calls name an alias as their reply address so that an answer
arriving after the caller stopped waiting is dropped by the runtime.
"""

from __future__ import annotations

from typing import Any

import pytest
from runtime_support import not_in_process, run_in

from otpylib import process
from otpylib.runtime.backends.asyncio_backend import AsyncIOBackend
from otpylib.runtime.data import Pid
from otpylib.runtime.errors import NotInProcessError


async def drain() -> list[Any]:
    """The caller's queued messages, taken without waiting."""
    out = []
    while True:
        try:
            out.append(await process.receive(timeout=0))
        except TimeoutError:
            return out


async def test_a_message_to_an_active_alias_reaches_the_owner(runtime: AsyncIOBackend) -> None:
    async def body() -> Any:
        alias = runtime.alias()
        await runtime.send(alias, "by alias")
        assert runtime.send_nowait(alias, "nowait")
        return alias, await drain()

    alias, got = await run_in(runtime, body)
    assert type(alias) is Pid and alias.node == runtime.node_name
    assert got == ["by alias", "nowait"]


async def test_after_unalias_messages_to_the_alias_are_dropped(runtime: AsyncIOBackend) -> None:
    async def body() -> Any:
        alias = runtime.alias()
        first = runtime.unalias(alias)
        again = runtime.unalias(alias)
        await runtime.send(alias, "late")
        delivered = runtime.send_nowait(alias, "late too")
        return first, again, delivered, await drain()

    assert await run_in(runtime, body) == (True, False, False, [])


async def test_an_alias_is_not_a_process_and_not_anothers_to_remove(
    runtime: AsyncIOBackend,
) -> None:
    async def owner() -> Any:
        alias = runtime.alias()

        async def stranger() -> bool:
            return runtime.unalias(alias)

        refused = await run_in(runtime, stranger)
        await runtime.send(alias, "still open")
        return alias, refused, await drain()

    alias, refused, got = await run_in(runtime, owner)
    assert refused is False
    assert got == ["still open"]
    assert not runtime.is_alive(alias)
    assert alias not in runtime.processes()


async def test_an_alias_left_by_a_process_that_ended_delivers_nothing(
    runtime: AsyncIOBackend,
) -> None:
    async def leaves_one() -> Pid:
        return runtime.alias()

    alias = await run_in(runtime, leaves_one)
    await runtime.send(alias, "to nobody")  # dropped, as to a dead pid
    assert runtime.send_nowait(alias, "again") is False


async def test_alias_outside_a_process_is_refused(runtime: AsyncIOBackend) -> None:
    with pytest.raises(NotInProcessError, match=not_in_process("alias")):
        runtime.alias()


async def test_process_module_offers_alias_and_unalias(runtime: AsyncIOBackend) -> None:
    async def body() -> Any:
        alias = process.alias()
        await process.send(alias, "one")
        first = await process.receive(timeout=1)
        active = process.unalias(alias)
        await process.send(alias, "dropped")
        return first, active, await drain()

    assert await run_in(runtime, body) == ("one", True, [])


async def test_aliases_of_a_process_go_when_it_ends(runtime: AsyncIOBackend) -> None:
    async def body() -> Any:
        return process.alias(), process.alias()

    first, second = await run_in(runtime, body)
    # The owner has ended without unalias: both are gone, not kept for later.
    assert first not in runtime._aliases and second not in runtime._aliases
    assert runtime.send_nowait(first, "late") is False
