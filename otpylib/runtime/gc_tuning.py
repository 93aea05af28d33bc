"""Garbage-collector settings for a process that is all ours (``otpylib.run``, ``otpy-node``).

Every message is a tuple, and CPython's cyclic collector counts each new
tuple towards its next pass: with the default first threshold (700) a busy
mailbox triggers a young-generation pass every few hundred messages, and the
messages waiting in mailboxes survive into the older generations, whose
passes then walk every object the program imported too. Two settings cut
that cost (bench.local: raw one-way ~1.7M -> ~3M msg/s):

- ``gc.freeze()`` once start-up is over moves everything that exists then
  (modules, classes, functions, configuration) to a generation no pass ever
  walks again. They live as long as the program anyway.
- A first threshold of ``GEN0_THRESHOLD`` instead of 700: fewer passes, each
  over more objects. Reference counting still frees everything that is not
  in a cycle at once; only cyclic garbage (an exception and its traceback,
  for instance) waits a little longer, at most this many container objects.

Applied only where the whole interpreter is ours (``otpylib.run`` and
``otpy-node``), never on import: a library must not change the collector of
the program that imports it.
"""

from __future__ import annotations

import gc
import logging
from typing import Final

logger = logging.getLogger(__name__)

__all__ = ["GEN0_THRESHOLD", "tune_gc"]

#: First-generation threshold once tuned (CPython's default is 700).
GEN0_THRESHOLD: Final = 50_000


def tune_gc(gen0_threshold: int = GEN0_THRESHOLD) -> None:
    """Freeze what start-up created and raise the first collector threshold.

    Call once, after imports and configuration and before the work starts
    (``otpylib.run`` and ``otpy-node run`` do). Calling it again freezes
    whatever was created since, which is harmless for long-lived objects and
    a leak for garbage: call it at start-up only.

    Raises:
        ValueError: ``gen0_threshold`` is not a positive int.
    """
    if type(gen0_threshold) is not int or gen0_threshold < 1:
        raise ValueError(f"tune_gc() takes a positive int threshold, got {gen0_threshold!r}")
    # Collect first, so that no garbage of start-up is frozen for good.
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)
    logger.debug(
        "gc tuned: %d objects frozen, thresholds %r", gc.get_freeze_count(), gc.get_threshold()
    )
