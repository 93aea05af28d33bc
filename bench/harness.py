"""What the multi-process benchmarks share: the event loop, child processes, Erlang nodes.

Every process started here is stopped by the code that started it (a
``finally`` or a ``with``), so a benchmark that fails or is interrupted
leaves nothing running. :func:`exit_on_sigterm` turns SIGTERM into
``SystemExit`` so those ``finally`` blocks run then too.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: The repository root: children run ``python -m bench.X`` from here.
ROOT = Path(__file__).resolve().parent.parent
#: Cookie of every node the benchmarks start (they listen on loopback only).
COOKIE = "bench-cookie"
#: Environment variable telling a child which pid started it (see serve_until_orphaned).
_PARENT_ENV = "OTPY_BENCH_PARENT"
#: Seconds a child has to write its port file before the run is abandoned.
CHILD_START_DEADLINE = 20.0


def use_uvloop(asyncio_flag: bool, asked: bool = False) -> bool:
    """uvloop unless ``--asyncio`` was given or it is missing (then say so if it was ``asked``)."""
    if asyncio_flag:
        return False
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if asked:
            print("uvloop is not installed; using the default loop")
        return False
    return True


def run_loop(coro: Any, uvloop_on: bool) -> Any:
    """Run ``coro`` to completion on uvloop or asyncio's own loop."""
    if uvloop_on:
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def exit_on_sigterm() -> None:
    """Make SIGTERM raise ``SystemExit`` so ``finally`` blocks stop what we started."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def start_child(module: str, argv: Sequence[str]) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``python -m module --port-file F *argv``; return it and what it wrote to F.

    The child writes its listening port (and anything else it wants to
    report) to F once it is ready; it is killed if it has not done so
    within :data:`CHILD_START_DEADLINE`.
    """
    fd, port_file = tempfile.mkstemp(prefix="otpy-bench-")
    os.close(fd)
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "--port-file", port_file, *argv],
        cwd=ROOT,
        env=dict(os.environ, **{_PARENT_ENV: str(os.getpid())}),
    )
    try:
        deadline = time.monotonic() + CHILD_START_DEADLINE
        while time.monotonic() < deadline:
            text = Path(port_file).read_text()
            if text:
                return proc, text
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{module} child exited with {proc.returncode} before it listened"
                )
            time.sleep(0.02)
        raise RuntimeError(f"{module} child did not listen within {CHILD_START_DEADLINE:g} s")
    except BaseException:
        stop(proc)
        raise
    finally:
        os.unlink(port_file)


def write_port_file(port_file: str, text: str) -> None:
    """Child side of :func:`start_child`: publish ``text`` atomically (no half-read file)."""
    tmp = f"{port_file}.tmp"
    Path(tmp).write_text(text)
    os.replace(tmp, port_file)


async def serve_until_orphaned() -> None:
    """Child side: serve until the benchmark that started us is gone, then exit.

    The parent kills its children when it ends; this covers the case where
    it cannot (SIGKILL): no server outlives its benchmark by more than
    half a second.
    """
    # The parent's pid comes from the environment: reading getppid() here
    # could already see init's if the parent died while we started.
    parent = int(os.environ.get(_PARENT_ENV, os.getppid()))
    while os.getppid() == parent:
        await asyncio.sleep(0.5)
    os._exit(0)


def stop(proc: subprocess.Popen[Any]) -> None:
    """Kill ``proc`` and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()


# ------------------------------------------------------------------ erlang


def erlang_missing() -> str | None:
    """Why the Erlang rows cannot run here, or None when ``erl``, ``erlc`` and ``epmd`` exist."""
    missing = [tool for tool in ("erl", "erlc", "epmd") if shutil.which(tool) is None]
    return f"{', '.join(missing)} not installed" if missing else None


@contextmanager
def erlang_nodes(module: str, source: str) -> Iterator[Any]:
    """Compile ``source`` and yield a function that runs ``erl`` nodes with it.

    A private port mapper on a free loopback port, nodes listening on
    loopback only, and everything stopped afterwards: nothing lingers or
    listens beyond 127.0.0.1. The yielded ``erl(name, fn, *args)`` starts a
    node running ``module:fn([args])`` and returns its ``Popen`` (stdout
    piped); the caller stops it with :func:`stop`.
    """
    erl, erlc, epmd = shutil.which("erl"), shutil.which("erlc"), shutil.which("epmd")
    assert erl is not None and erlc is not None and epmd is not None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        epmd_port = probe.getsockname()[1]
    env = dict(os.environ, ERL_EPMD_PORT=str(epmd_port), ERL_EPMD_ADDRESS="127.0.0.1")
    env["ERL_CRASH_DUMP_SECONDS"] = "0"  # a failed run leaves no erl_crash.dump behind
    mapper = subprocess.Popen(
        [epmd, "-port", str(epmd_port), "-address", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / f"{module}.erl"
            src.write_text(source)
            subprocess.run([erlc, "-o", tmp, str(src)], check=True)
            base = [erl, "-noshell", "-pa", tmp, "-setcookie", COOKIE, "-start_epmd", "false"]
            base += ["-kernel", "inet_dist_use_interface", "{127,0,0,1}"]

            def start(name: str, fn: str, *args: str) -> subprocess.Popen[str]:
                argv = [*base, "-name", f"{name}@127.0.0.1", "-s", module, fn, *args]
                return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)

            yield start
    finally:
        mapper.terminate()
        mapper.wait()


def erlang_pair(
    module: str, source: str, serve: Sequence[str], run: Sequence[str], timeout: float = 120.0
) -> str:
    """Run ``module:serve`` on node erl_b and ``module:run`` on erl_a; return erl_a's stdout.

    ``run`` gets ``erl_b@127.0.0.1`` as its first argument (it should
    ``net_adm:ping`` it until ``pong``) and must ``halt()`` when done.
    """
    with erlang_nodes(module, source) as erl:
        server = erl("erl_b", "serve", *serve)
        try:
            client = erl("erl_a", "run", "erl_b@127.0.0.1", *run)
            try:
                out, _ = client.communicate(timeout=timeout)
                return str(out)
            finally:
                stop(client)
        finally:
            stop(server)
