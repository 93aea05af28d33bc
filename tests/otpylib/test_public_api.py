"""The short public face: otpylib.run, Runtime as a context manager, spawn_opt."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from typing import Any

import pytest

import otpylib
from otpylib import DOWN, EXIT, NORMAL, ProcessExit, Runtime, process


def test_the_common_names_are_at_top_level() -> None:
    for name in (
        "Pid",
        "Ref",
        "Atom",
        "atom",
        "DOWN",
        "EXIT",
        "process",
        "gen_server",
        "supervisor",
        "run",
        "Runtime",
        "ProcessExit",
        "NotInProcessError",
    ):
        assert name in otpylib.__all__ and hasattr(otpylib, name)


def _run_script(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_run_returns_when_main_ends_and_stops_what_main_left_running() -> None:
    done = _run_script(
        """
        import otpylib
        from otpylib import process

        async def server():
            try:
                while True:
                    await process.receive()
            finally:
                print("server stopped")

        async def main():
            await process.spawn(server, name="server")
            print("main done")

        otpylib.run(main)
        print("after run")
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["main done", "server stopped", "after run"]


def test_run_raises_process_exit_when_main_crashes() -> None:
    async def main() -> None:
        raise ValueError("boom")

    with pytest.raises(ProcessExit) as info:
        # gc_tuning=False: this runs in the test process, whose collector stays as it is.
        otpylib.run(main, use_uvloop=False, gc_tuning=False)
    assert isinstance(info.value.reason, ValueError)
    assert isinstance(info.value.__cause__, ValueError)


async def test_runtime_as_a_context_manager_initializes_and_shuts_down() -> None:
    ended: list[Any] = []
    started = asyncio.Event()

    async def worker() -> None:
        started.set()
        try:
            await process.receive()
        except BaseException:
            ended.append("cancelled")
            raise

    async with Runtime() as rt:
        pid = await rt.spawn(worker)
        await started.wait()
        assert rt.is_alive(pid)
    assert ended == ["cancelled"]
    assert not rt.is_alive(pid)


async def test_spawn_opt_links_and_monitors_at_once() -> None:
    async with Runtime() as rt:
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        async def child() -> None:
            raise process_exit("bye")

        async def parent() -> None:
            process.flag("trap_exit", True)
            pid, ref = await process.spawn_opt(child, link=True, monitor=True)
            first = await process.receive(timeout=5)
            second = await process.receive(timeout=5)
            done.set_result((pid, ref, {first[0], second[0]}, first, second))

        await rt.spawn(parent)
        _pid, ref, kinds, *_ = await asyncio.wait_for(done, 5)
        assert kinds == {EXIT, DOWN}
        assert ref is not None


def process_exit(reason: Any) -> ProcessExit:
    return ProcessExit(reason)


async def test_spawn_opt_without_options_is_a_plain_spawn() -> None:
    async with Runtime() as rt:
        pid, ref = await rt.spawn_opt(asyncio.sleep, (0,))
        assert ref is None and pid.node == rt.node_name
        assert NORMAL is otpylib.NORMAL
