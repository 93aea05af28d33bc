"""otpylib: Erlang/OTP-style processes for Python on asyncio.

The short public face::

    import otpylib
    from otpylib import process

    async def main():
        pid = await process.spawn(worker)
        ...

    otpylib.run(main)            # or: async with otpylib.Runtime() as runtime: ...

Layout (the public names are re-exported here; import from ``otpylib``):
    process.py            the API for code running inside a process
    gen_server.py         generic servers (call, cast, info)
    supervisor.py         supervision trees
    application.py        applications: a top process held by a master (OTP's application)
    runtime/atoms.py      atoms and the usual ones (EXIT, DOWN, NORMAL, ...)
    runtime/data.py       Pid, Ref, ProcessInfo, RuntimeStatistics
    runtime/errors.py     the exceptions, each with a ``.reason``
    runtime/function_ref.py   functions named across nodes ("module:function")
    runtime/backends/     the contract (and the seam with distribution) and
                          the asyncio runtime
Distribution (nodes, clusters) is the separate package ``otpylib_dist``.
"""

from otpylib import application, gen_server, process, supervisor
from otpylib._run import run
from otpylib._version import __version__
from otpylib.runtime.atoms import (
    DOWN,
    EXIT,
    KILL,
    KILLED,
    NOCONNECTION,
    NODEDOWN,
    NODEUP,
    NOPROC,
    NORMAL,
    SHUTDOWN,
    TIMEOUT,
    TRAP_EXIT,
    Atom,
    atom,
)
from otpylib.runtime.backends.asyncio_backend import AsyncIOBackend
from otpylib.runtime.backends.base import RuntimeBackend
from otpylib.runtime.data import Pid, ProcessInfo, Ref, RuntimeStatistics
from otpylib.runtime.errors import (
    NameAlreadyRegistered,
    NotInProcessError,
    OtpError,
    ProcessExit,
    RuntimeClosedError,
    UnknownNameError,
)

#: The local runtime (one node's processes on asyncio); ``async with Runtime()``.
Runtime = AsyncIOBackend

__all__ = [
    "DOWN",
    "EXIT",
    "KILL",
    "KILLED",
    "NOCONNECTION",
    "NODEDOWN",
    "NODEUP",
    "NOPROC",
    "NORMAL",
    "SHUTDOWN",
    "TIMEOUT",
    "TRAP_EXIT",
    "Atom",
    "NameAlreadyRegistered",
    "NotInProcessError",
    "OtpError",
    "Pid",
    "ProcessExit",
    "ProcessInfo",
    "Ref",
    "Runtime",
    "RuntimeBackend",
    "RuntimeClosedError",
    "RuntimeStatistics",
    "UnknownNameError",
    "__version__",
    "application",
    "atom",
    "gen_server",
    "process",
    "run",
    "supervisor",
]
