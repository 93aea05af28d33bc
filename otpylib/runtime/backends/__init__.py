"""Runtime backends: the contract (base.py) and its implementations."""

from otpylib.runtime.backends.base import RemoteRouter, RuntimeBackend

__all__ = ["RemoteRouter", "RuntimeBackend"]
