"""Helpers shared by the runtime tests, and process functions spawned by reference.

The runtime is driven from ``main`` (the test), which is not a process: it
cannot receive or monitor. These helpers run a small process to do that and
hand the outcome back through an asyncio future or queue. Every wait has the
generous deadline ``DEADLINE``: the tests wait for events, never measure speed.

test_spawn.py spawns the functions at the bottom by reference
(``"runtime_support:report"``); this module is importable because pytest puts
this directory on ``sys.path``, as tests/cluster does for ``cluster_procs``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from waiting import wait_until
from waiting import watch as watch  # re-exported: the runtime tests import it from here

from otpylib import process
from otpylib.runtime.atoms import DOWN, EXIT, SHUTDOWN, atom
from otpylib.runtime.backends.asyncio_backend import AsyncIOBackend
from otpylib.runtime.data import LOCAL_NODE, Pid

#: What the ``make_runtime`` fixture gives: make another initialized runtime.
RuntimeFactory = Callable[[], Awaitable[AsyncIOBackend]]

#: Seconds any test waits for something that should happen almost at once.
DEADLINE = 5.0

#: A pid no runtime in these tests ever hands out (ids count up from 1).
NEVER_SPAWNED = Pid(LOCAL_NODE, 999_999_999, 0)

#: A pid of another node; a runtime without distribution treats it as dead.
REMOTE_PID = Pid("other@host", 1, 0)


def not_in_process(what: str) -> str:
    """The whole message of the NotInProcessError that ``what()`` raises outside a process."""
    return (
        rf"^{what}\(\) must be called from inside a process of this runtime; "
        r"spawn a process and call it there \(from main, use spawn/send/exit\)$"
    )


async def run_in(
    runtime: AsyncIOBackend,
    fn: Callable[..., Awaitable[Any]],
    *args: Any,
    trap_exits: bool = False,
) -> Any:
    """Run ``fn(*args)`` as a process of ``runtime``; return its result or raise its error.

    An ``assert`` failing inside ``fn`` fails the test with that assertion.
    """
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def body() -> None:
        try:
            result = await fn(*args)
        except asyncio.CancelledError:
            if not done.done():
                done.set_exception(AssertionError("the process running the test body was killed"))
            raise
        except BaseException as exc:
            if not done.done():
                done.set_exception(exc)
            raise
        done.set_result(result)

    await runtime.spawn(body, trap_exits=trap_exits)
    return await asyncio.wait_for(done, DEADLINE)


async def exit_reason(watched: asyncio.Future[Any]) -> Any:
    """The exit reason a :func:`watch` future resolves to (within the deadline)."""
    return await asyncio.wait_for(watched, DEADLINE)


#: ``(CRASH, exc)`` makes a collector raise ``exc``; ``(CRASH, reason)`` for any
#: other value makes it call ``exit_self(reason)``.
CRASH = atom.ensure("runtime_support_crash")


async def spawn_collector(
    runtime: AsyncIOBackend,
    *,
    trap_exits: bool = True,
    name: str | None = None,
    link_to: Pid | None = None,
) -> tuple[Pid, asyncio.Queue[Any]]:
    """Spawn a process that puts every message it receives on a queue the test reads.

    It traps exits by default, so exit signals show up in the queue as
    ``(EXIT, from, reason)`` messages. It ends after passing on the runtime's
    own shutdown signal, so shutting the runtime down does not wait for it.
    With ``link_to`` it first links to that pid, and this returns once the
    link is in place. Send it ``(CRASH, ...)`` to make it end.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    ready: asyncio.Future[None] = loop.create_future()

    async def collector() -> None:
        if link_to is not None:
            await process.link(link_to)
        ready.set_result(None)
        while True:
            msg = await process.receive()
            if type(msg) is tuple and len(msg) == 2 and msg[0] is CRASH:
                if isinstance(msg[1], BaseException):
                    raise msg[1]
                process.exit_self(msg[1])
            queue.put_nowait(msg)
            if is_runtime_shutdown(msg):
                return

    pid = await runtime.spawn(collector, trap_exits=trap_exits, name=name)
    if link_to is not None:
        await asyncio.wait_for(ready, DEADLINE)
    return pid, queue


async def next_message(queue: asyncio.Queue[Any]) -> Any:
    """The next message a collector got (within the deadline)."""
    return await asyncio.wait_for(queue.get(), DEADLINE)


async def wait_waiting(runtime: AsyncIOBackend, pid: Pid) -> None:
    """Wait until ``pid`` is blocked in ``receive``."""

    def waiting() -> bool:
        info = runtime.process_info(pid)
        return info is not None and info.state == "waiting"

    await wait_until(waiting, f"{pid!r} waits in receive")


async def wait_gone(runtime: AsyncIOBackend, pid: Pid) -> None:
    """Wait until ``pid`` has left the process table."""
    await wait_until(lambda: runtime.process_info(pid) is None, f"{pid!r} has ended")


def is_down(msg: Any, ref: Any) -> bool:
    """Whether ``msg`` is the ``DOWN`` message of the monitor ``ref``."""
    return type(msg) is tuple and len(msg) == 4 and msg[0] is DOWN and msg[1] == ref


def is_runtime_shutdown(msg: Any) -> bool:
    """Whether ``msg`` is the ``(EXIT, runtime_pid, shutdown)`` a trapping process gets."""
    return (
        type(msg) is tuple
        and len(msg) == 3
        and msg[0] is EXIT
        and msg[1] == process.runtime().runtime_pid  # type: ignore[attr-defined]
        and msg[2] is SHUTDOWN
    )


async def idle() -> None:
    """Receive and drop messages until killed (or, when trapping, until shutdown)."""
    while not is_runtime_shutdown(await process.receive()):
        pass


async def echo() -> None:
    """Answer every ``(sender, msg)`` with ``("echo", msg)``."""
    while True:
        sender, msg = await process.receive()
        await process.send(sender, ("echo", msg))


# ------------------------------------------------ spawned by reference (test_spawn.py)


async def report(done: asyncio.Future[Any], *args: Any, **kwargs: Any) -> None:
    """Resolve ``done`` with this process's pid, its args and kwargs."""
    done.set_result((process.self(), args, kwargs))


class Namespace:
    """Holds a function one attribute deep ("runtime_support:Namespace.nested")."""

    @staticmethod
    async def nested(done: asyncio.Future[Any]) -> None:
        done.set_result("nested")


#: Not callable: spawning "runtime_support:NOT_CALLABLE" must fail.
NOT_CALLABLE = 42
