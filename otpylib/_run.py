"""``otpylib.run``: a whole program as one call, the way ``asyncio.run`` is.

Builds the event loop (uvloop when installed, as ``otpy-node`` does), a
runtime, runs ``main`` as the first process, waits for it to end without
polling (an init process monitors it), then shuts the runtime down, so the
processes ``main`` left running get ``shutdown`` and their clean-up runs.
It also tunes the garbage collector for a program of processes (see
``otpylib.runtime.gc_tuning``), since the interpreter is ours.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from otpylib import process
from otpylib.runtime.atoms import DOWN, NORMAL
from otpylib.runtime.backends.asyncio_backend import AsyncIOBackend
from otpylib.runtime.backends.base import RuntimeBackend
from otpylib.runtime.errors import ProcessExit
from otpylib.runtime.gc_tuning import tune_gc

logger = logging.getLogger(__name__)

__all__ = ["run"]


def run(
    main: Callable[..., Awaitable[Any]],
    *args: Any,
    runtime: RuntimeBackend | None = None,
    use_uvloop: bool | None = None,
    gc_tuning: bool = True,
) -> None:
    """Run ``main(*args)`` as a process of a new runtime until it ends; then shut down.

    Args:
        main: the async function of the first process.
        runtime: run on this runtime (e.g. an ``otpylib_dist.Node``, not yet
            initialized) instead of a new local one.
        use_uvloop: ``None`` (default): uvloop when it is installed; ``True``
            requires it; ``False``: asyncio's own loop.
        gc_tuning: once the runtime is initialized, freeze what start-up
            created and raise the collector's first threshold
            (``otpylib.runtime.gc_tuning``; about 2x local one-way messages).
            ``run`` owns the interpreter as ``asyncio.run`` does, so this
            is on by default; ``False`` leaves the collector alone.

    Raises:
        ProcessExit: ``main`` ended with a reason other than ``normal`` (an
            exception it raised is the ``__cause__``), so a script exits
            non-zero when its main process crashes.
        ImportError: ``use_uvloop=True`` and uvloop is not installed.
    """
    loop_factory = _loop_factory(use_uvloop)
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        reason = runner.run(_run(main, args, runtime or AsyncIOBackend(), gc_tuning))
    if reason is NORMAL:
        return
    exc = ProcessExit(reason)
    if isinstance(reason, BaseException):
        raise exc from reason
    raise exc


def _loop_factory(use_uvloop: bool | None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if use_uvloop is False:
        return None
    try:
        import uvloop
    except ImportError:
        if use_uvloop:
            raise ImportError(
                "use_uvloop=True but uvloop is not installed; pip install 'otpylib[uvloop]'"
            ) from None
        return None
    return uvloop.new_event_loop  # type: ignore[no-any-return,unused-ignore]


async def _run(
    main: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    rt: RuntimeBackend,
    gc_tuning: bool,
) -> Any:
    await rt.initialize()
    if gc_tuning:
        tune_gc()
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    try:
        await rt.spawn(_init, (done, main, args), name=None)
        return await done
    finally:
        await rt.shutdown()


async def _init(
    done: asyncio.Future[Any], main: Callable[..., Awaitable[Any]], args: tuple[Any, ...]
) -> None:
    """The first process: start ``main`` monitored, and report how it ended."""
    pid, ref = await process.spawn_monitor(main, args)

    def is_down(m: Any) -> bool:
        return type(m) is tuple and len(m) == 4 and m[0] is DOWN and m[1] == ref

    message = await process.receive(match=is_down)
    if not done.done():
        done.set_result(message[3])
    del pid
