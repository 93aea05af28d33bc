"""The asyncio implementation of the runtime contract.

Layout:
    backend.py   AsyncIOBackend: process table, registry, links, monitors, signals
    process.py   Process: the per-process record and its mailbox
"""

from otpylib.runtime.backends.asyncio_backend.backend import AsyncIOBackend, resolve_function

__all__ = ["AsyncIOBackend", "resolve_function"]
