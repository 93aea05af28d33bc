"""Which process is running right now: the one context variable of the runtime.

Each process runs as its own asyncio task, and asyncio gives every task a
copy of the context it was created in; the process wrapper sets
``current_process`` at its start, so any code awaited inside the process
(however deep) can find its own process and runtime without a global.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from otpylib.runtime.backends.asyncio_backend.process import Process

logger = logging.getLogger(__name__)

__all__ = ["current_process"]

#: The process whose code is running in this task, or ``None`` outside processes.
current_process: ContextVar[Process | None] = ContextVar("otpylib_current_process", default=None)
