"""The asyncio implementation of the runtime contract.

Layout:
    backend.py   AsyncIOBackend: lifecycle, spawn, mailboxes, registry, introspection
    signals.py   SignalEngine: links, monitors, exit signals, termination (mixed in)
    entry.py     Entry: what the distribution layer may do to local processes
    process.py   Process: the per-process record and its mailbox
    mailbox.py   send, receive, receive_batch as process code calls them (the hot path)
"""

from otpylib.runtime.backends.asyncio_backend.backend import AsyncIOBackend
from otpylib.runtime.function_ref import resolve_function

__all__ = ["AsyncIOBackend", "resolve_function"]
