"""The counters behind ps, top and metrics: labels, messages received, exits by kind."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import pytest
from runtime_support import exit_reason, idle, run_in, wait_until, watch

from otpylib import gen_server, process, supervisor
from otpylib.gen_server import GenServer
from otpylib.runtime.atoms import KILLED, NOCONNECTION, NORMAL, SHUTDOWN, atom
from otpylib.runtime.backends.asyncio_backend import AsyncIOBackend
from otpylib.runtime.data import EXIT_KINDS, exit_kind
from otpylib.runtime.errors import NotInProcessError
from otpylib.supervisor import REST_FOR_ONE, ChildSpec


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        (NORMAL, "normal"),
        (SHUTDOWN, "shutdown"),
        ((SHUTDOWN, "any term"), "shutdown"),
        (KILLED, "killed"),
        (NOCONNECTION, "noconnection"),
        (atom.ensure("my_reason"), "crash"),
        (ValueError("boom"), "crash"),
        ("normal", "crash"),  # a str is not the atom: the runtime normalizes before this
        ((NORMAL, 1), "crash"),
    ],
)
def test_exit_kind_sorts_reasons_into_a_closed_set(reason: Any, kind: str) -> None:
    assert exit_kind(reason) == kind
    assert kind in EXIT_KINDS


async def test_statistics_count_exits_by_kind(runtime: AsyncIOBackend) -> None:
    async def crash() -> None:
        raise ValueError("on purpose")

    async def done() -> None:
        return None

    before = runtime.statistics().exits
    assert set(before) == set(EXIT_KINDS)
    watched = [await watch(runtime, await runtime.spawn(f)) for f in (crash, done)]
    victims = [await runtime.spawn(idle) for _ in range(3)]
    watched += [await watch(runtime, pid) for pid in victims]
    await runtime.exit(victims[0], "kill")
    await runtime.exit(victims[1], "shutdown")
    await runtime.exit(victims[2], NOCONNECTION)
    for w in watched:
        await exit_reason(w)
    await wait_until(lambda: len(runtime.processes()) == 0, "the watchers to end")
    after = runtime.statistics().exits
    assert {k: after[k] - before[k] for k in EXIT_KINDS} == {
        "normal": 1 + len(watched),  # each watcher returns once it has seen its DOWN
        "shutdown": 1,
        "killed": 1,
        "noconnection": 1,
        "crash": 1,
    }


async def test_messages_received_counts_every_delivery(runtime: AsyncIOBackend) -> None:
    pid = await runtime.spawn(idle)
    for i in range(25):
        await runtime.send(pid, i)
    assert runtime.send_nowait(pid, "one more")
    info = runtime.process_info(pid)
    assert info is not None
    assert (info.messages_received, info.message_queue_len) == (26, 26)


async def test_set_label_shows_in_process_info(runtime: AsyncIOBackend) -> None:
    ready = asyncio.Event()

    async def labelled() -> None:
        process.set_label("worker 7")
        ready.set()
        await process.receive()

    pid = await runtime.spawn(labelled)
    await asyncio.wait_for(ready.wait(), 10)
    info = runtime.process_info(pid)
    assert info is not None and info.label == "worker 7"

    async def unlabel() -> None:
        process.set_label("x")
        process.set_label(None)
        me = runtime.process_info(process.self())
        assert me is not None and me.label is None

    await run_in(runtime, unlabel)


async def test_set_label_outside_a_process_or_with_a_non_str_is_refused(
    runtime: AsyncIOBackend,
) -> None:
    with pytest.raises(NotInProcessError):
        process.set_label("x")

    async def bad() -> None:
        with pytest.raises(TypeError, match=r"^set_label\(\) takes a str or None, got int$"):
            process.set_label(3)  # type: ignore[arg-type]

    await run_in(runtime, bad)


class Named(GenServer):
    async def init(self, *args: Any) -> Any:
        return None


async def test_gen_servers_and_supervisors_label_themselves(runtime: AsyncIOBackend) -> None:
    async def start() -> tuple[Any, Any]:
        sup = await supervisor.start_link(
            [ChildSpec("named", partial(gen_server.start_link, Named, name="named"))],
            strategy=REST_FOR_ONE,
        )
        return sup, process.whereis("named")

    sup, server = await run_in(runtime, start)
    labels = {}
    for pid in (sup, server):
        info = runtime.process_info(pid)
        assert info is not None
        labels[pid] = info.label
        assert info.function == "otpylib._gen_server_loop.serve"
    assert labels[server] == f"gen_server {__name__}.Named"
    assert labels[sup] == "supervisor rest_for_one"
    await wait_until(lambda: runtime.is_alive(sup), "the supervisor to stay up")
