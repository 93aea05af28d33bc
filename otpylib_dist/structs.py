"""otpylib's own records on the wire: registered with the codec from outside it.

The protocol package knows no behaviour, and ``otpylib`` knows no codec, so
the records a supervisor answers with (``which_children``,
``count_children``) are registered here, where both are known: importing
``otpylib_dist`` is enough for them to travel between nodes.
"""

from __future__ import annotations

import logging

from otpylib.supervisor import ChildCounts, ChildInfo
from otpylib_dist.protocol.registry import register_struct

logger = logging.getLogger(__name__)

__all__: list[str] = []

register_struct(ChildInfo, "otpylib.ChildInfo")
register_struct(ChildCounts, "otpylib.ChildCounts")
