"""otpylib.application: start functions, top processes, types and the node-stop hook."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from behaviour_helpers import WAIT

from otpylib import application, gen_server, process
from otpylib.application import (
    PERMANENT,
    TEMPORARY,
    TRANSIENT,
    ApplicationEnd,
    ApplicationError,
)
from otpylib.gen_server import REPLY
from otpylib.runtime.atoms import NORMAL, SHUTDOWN, atom
from otpylib.runtime.backends.asyncio_backend import AsyncIOBackend
from otpylib.runtime.data import Pid


class KV(gen_server.GenServer):
    """A tiny key-value server: ``("put", k, v)`` and ``("get", k)``; ``"crash"`` raises."""

    async def init(self) -> dict[str, Any]:
        return {}

    async def handle_call(self, request: Any, from_: Any, state: dict[str, Any]) -> Any:
        if request == "crash":
            raise RuntimeError("kv crashed on purpose")
        if request[0] == "put":
            state[request[1]] = request[2]
            return (REPLY, "ok", state)
        return (REPLY, state.get(request[1]), state)

    async def handle_cast(self, request: Any, state: dict[str, Any]) -> Any:
        return (gen_server.NOREPLY, state)


async def start_kv() -> Pid:
    """A start function in OTP's style: start_link the top process, return its pid."""
    return await gen_server.start_link(KV, name="kv")


async def failing_start() -> Pid:
    raise ValueError("no config")


async def returns_nothing() -> None:
    return None


async def loop_forever() -> None:
    """A plain process function: its own top process."""
    await process.register("looper")
    while True:
        msg = await process.receive()
        if msg == "crash":
            raise RuntimeError("looper crashed on purpose")
        if msg == "quit":
            return


class Ends:
    """Collects what the node-stop handler gets."""

    def __init__(self) -> None:
        self.ends: list[ApplicationEnd] = []
        self.event = asyncio.Event()

    def __call__(self, end: ApplicationEnd) -> None:
        self.ends.append(end)
        self.event.set()

    async def wait(self) -> ApplicationEnd:
        await asyncio.wait_for(self.event.wait(), WAIT)
        return self.ends[0]


@pytest.fixture
def ends(runtime: AsyncIOBackend) -> Ends:
    handler = Ends()
    application.set_node_stop_handler(runtime, handler)
    return handler


async def _until(predicate: Any) -> None:
    async with asyncio.timeout(WAIT):
        while not predicate():
            await asyncio.sleep(0.005)


async def test_a_returned_start_linked_server_keeps_running(
    runtime: AsyncIOBackend, ends: Ends
) -> None:
    top = await application.start(start_kv, runtime=runtime)
    assert top is not None and runtime.whereis("kv") == top
    await asyncio.sleep(0.05)  # the start function has long returned
    assert runtime.is_alive(top)
    assert await gen_server.call("kv", ("put", "a", 1), runtime=runtime) == "ok"
    [info] = application.which_applications(runtime)
    assert (info.name, info.type, info.top) == (f"{__name__}:start_kv", PERMANENT, top)
    await application.stop(info.name, runtime=runtime)
    assert not runtime.is_alive(top)
    assert application.which_applications(runtime) == []
    assert ends.ends == []  # stop() does not stop the node


async def test_a_permanent_application_that_crashes_stops_the_node(
    runtime: AsyncIOBackend, ends: Ends, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="otpylib.application")
    top = await application.start(start_kv, name="kv_app", runtime=runtime)
    with pytest.raises(gen_server.CallError):
        await gen_server.call("kv", "crash", runtime=runtime)
    end = await ends.wait()
    assert (end.name, end.type, end.failed) == ("kv_app", PERMANENT, True)
    assert isinstance(end.reason, RuntimeError)
    assert end.message == (
        f"application {__name__}:start_kv crashed: RuntimeError: kv crashed on purpose"
    )
    assert application.which_applications(runtime) == []
    # Structured fields for log pipelines (otpy-node --log-format json prints them).
    fields = [
        (
            r.levelname,
            getattr(r, "event", None),
            getattr(r, "pid", None),
            getattr(r, "reason", None),
        )
        for r in caplog.records
        if r.name == "otpylib.application"
    ]
    assert fields == [
        ("INFO", "application_started", str(top), None),
        ("ERROR", "application_ended", None, "RuntimeError"),
    ]


async def test_a_permanent_application_that_ends_normally_stops_the_node_without_failure(
    runtime: AsyncIOBackend, ends: Ends
) -> None:
    top = await application.start(loop_forever, runtime=runtime)
    assert top is not None and runtime.whereis("looper") == top  # its own top process
    await runtime.send("looper", "quit")
    end = await ends.wait()
    assert (end.reason, end.failed) == (NORMAL, False)
    assert end.message == f"application {__name__}:loop_forever ended (normal)"


async def test_transient_ends_normally_without_stopping_but_not_abnormally(
    runtime: AsyncIOBackend, ends: Ends
) -> None:
    await application.start(loop_forever, type=TRANSIENT, runtime=runtime)
    await runtime.send("looper", "quit")
    await _until(lambda: application.which_applications(runtime) == [])
    assert ends.ends == []
    await application.start(loop_forever, type="transient", runtime=runtime)
    await runtime.send("looper", "crash")
    end = await ends.wait()
    assert (end.type, end.failed) == (TRANSIENT, True)


async def test_temporary_crash_is_only_logged(
    runtime: AsyncIOBackend, ends: Ends, caplog: pytest.LogCaptureFixture
) -> None:
    await application.start(loop_forever, type=TEMPORARY, runtime=runtime)
    await runtime.send("looper", "crash")
    await _until(lambda: application.which_applications(runtime) == [])
    await _until(lambda: "the node runs on" in caplog.text)
    assert ends.ends == []
    assert (
        f"application {__name__}:loop_forever crashed: RuntimeError: looper crashed on purpose; "
        "the node runs on" in caplog.text
    )


async def test_a_start_function_that_raises_fails_the_start(
    runtime: AsyncIOBackend, ends: Ends
) -> None:
    with pytest.raises(
        ApplicationError,
        match=rf"^application {__name__}:failing_start failed to start: ValueError: no config$",
    ) as caught:
        await application.start(failing_start, runtime=runtime)
    assert isinstance(caught.value.reason, ValueError)
    assert application.which_applications(runtime) == []
    assert ends.ends == []  # the caller decides


async def test_a_start_function_returning_no_pid_is_logged_and_ends_normally(
    runtime: AsyncIOBackend, ends: Ends, caplog: pytest.LogCaptureFixture
) -> None:
    assert await application.start(returns_nothing, runtime=runtime) is None
    end = await ends.wait()
    assert (end.reason, end.failed) == (NORMAL, False)
    [line] = [r.getMessage() for r in caplog.records if "not the pid" in r.getMessage()]
    assert line == (
        f"application {__name__}:returns_nothing: start function {__name__}:returns_nothing "
        "returned None, not the pid of its top process (return e.g. the pid of "
        "gen_server.start_link); the application ends normally"
    )


async def test_start_by_reference_and_refusals(runtime: AsyncIOBackend, ends: Ends) -> None:
    top = await application.start(f"{__name__}:start_kv", name="kv", runtime=runtime)
    assert runtime.whereis("kv") == top
    with pytest.raises(ApplicationError, match=r"^application kv is already started; ") as e:
        await application.start(start_kv, name="kv", runtime=runtime)
    assert e.value.reason is atom.ensure("already_started")
    with pytest.raises(ApplicationError, match=r"is not permanent, transient or temporary$"):
        await application.start(start_kv, name="other", type="forever", runtime=runtime)
    with pytest.raises(ApplicationError, match=r"^application nope is not running$"):
        await application.stop("nope", runtime=runtime)
    with pytest.raises(ApplicationError, match=r"not started: ModuleNotFoundError: "):
        await application.start("no_such_module_here:main", runtime=runtime)
    with pytest.raises(ApplicationError, match=r"was called outside any process; pass the"):
        application.which_applications()


async def test_stop_all_stops_in_reverse_order_and_disarms_the_node_stop(
    runtime: AsyncIOBackend, ends: Ends
) -> None:
    order: list[str] = []

    async def watch(name: str, pid: Pid) -> None:
        ref = await process.monitor(pid)
        await process.receive(match=lambda m: type(m) is tuple and len(m) == 4 and m[1] == ref)
        order.append(name)

    first = await application.start(start_kv, name="first", runtime=runtime)
    second = await application.start(loop_forever, name="second", runtime=runtime)
    assert first is not None and second is not None
    await runtime.spawn(watch, ("first", first))
    await runtime.spawn(watch, ("second", second))
    await asyncio.sleep(0.01)
    await application.stop_all(runtime)
    await _until(lambda: len(order) == 2)
    assert order == ["second", "first"]
    assert ends.ends == []


async def test_default_node_stop_is_runtime_shutdown() -> None:
    rt = AsyncIOBackend()
    await rt.initialize()
    try:
        await application.start(loop_forever, runtime=rt)
        await rt.send("looper", "crash")
        await _until(lambda: rt.whereis("looper") is None and rt.processes() == [])
        with pytest.raises(RuntimeError, match=r"shut down"):
            await rt.spawn(loop_forever)
    finally:
        await rt.shutdown()


async def test_runtime_shutdown_stops_applications_without_a_node_stop(
    ends: Ends, runtime: AsyncIOBackend
) -> None:
    top = await application.start(start_kv, runtime=runtime)
    assert top is not None
    await runtime.shutdown()
    assert not runtime.is_alive(top)
    assert ends.ends == []


async def leaves_with_a_reason() -> None:
    """A plain process function that ends with exit_self(reason)."""
    await process.register("leaver")
    await process.receive()
    process.exit_self(atom.ensure("bye"))


async def test_an_exit_self_reason_is_the_applications_end_reason(
    runtime: AsyncIOBackend, ends: Ends
) -> None:
    # Regression: the holder wrapped ProcessExit in another ProcessExit.
    await application.start(leaves_with_a_reason, runtime=runtime)
    await runtime.send("leaver", "go")
    end = await ends.wait()
    assert (end.reason, end.failed) == (atom.ensure("bye"), True)
    assert end.message == f"application {__name__}:leaves_with_a_reason crashed: :bye"


async def start_supervised_kv() -> Pid:
    """An OTP-shaped application: a supervisor over the KV server."""
    from functools import partial

    from otpylib import supervisor

    child = supervisor.ChildSpec("kv", partial(gen_server.start_link, KV, name="kv"))
    return await supervisor.start_link([child], max_restarts=2, max_seconds=60)


async def test_a_supervisor_top_restarts_then_giving_up_stops_the_node(
    runtime: AsyncIOBackend, ends: Ends
) -> None:
    top = await application.start(start_supervised_kv, runtime=runtime)
    first_kv = runtime.whereis("kv")
    assert top is not None and first_kv is not None
    with pytest.raises(gen_server.CallError):
        await gen_server.call("kv", "crash", runtime=runtime)
    await _until(lambda: runtime.whereis("kv") not in (None, first_kv))
    assert ends.ends == [] and runtime.is_alive(top)  # restarted: the application runs on
    for _ in range(2):  # past the intensity: the supervisor gives up with shutdown
        await _until(lambda: runtime.whereis("kv") is not None)
        with pytest.raises(gen_server.CallError):
            await gen_server.call("kv", "crash", runtime=runtime)
    end = await ends.wait()
    assert (end.reason, end.failed) == (SHUTDOWN, True)
    assert end.message == (
        f"application {__name__}:start_supervised_kv ended with reason :shutdown (as a "
        "supervisor does after too many restarts)"
    )
