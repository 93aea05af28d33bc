"""The runtime layer: atoms, identifiers, the backend contract and its backends.

Layout:
    atoms.py      interned atoms and the common ones (EXIT, DOWN, NORMAL ...)
    data.py       Pid, Ref, ProcessInfo, RuntimeStatistics
    errors.py     the exceptions the runtime raises
    context.py    the context variable naming the running process
    backends/     the backend contract and the asyncio backend
"""

from otpylib.runtime.atoms import Atom, atom
from otpylib.runtime.data import Pid, ProcessInfo, Ref, RuntimeStatistics

__all__ = ["Atom", "Pid", "ProcessInfo", "Ref", "RuntimeStatistics", "atom"]
