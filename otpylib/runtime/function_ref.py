"""Function references: how a process function or a class is named across nodes.

A process on another node cannot be handed a Python object, so remote spawn
names what to run by an importable reference, ``"package.module:qualname"``,
which the other node imports (never code shipped over the wire). This module
holds both directions: :func:`reference_of` turns a module-level function or
class into its reference, :func:`resolve_function` imports one back.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import sys
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["is_async_callable", "reference_of", "resolve_function"]


def resolve_function(ref: str) -> Callable[..., Any]:
    """Import ``"package.module:function"`` and return the function.

    Raises:
        ValueError: ``ref`` is not of the form ``module:function``.
        ImportError: the module cannot be imported.
        AttributeError: the module has no such function.
        TypeError: the attribute is not callable.
    """
    module_name, sep, qualname = ref.partition(":")
    if not sep or not module_name or not qualname:
        raise ValueError(f"function reference {ref!r} is not of the form 'package.module:function'")
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{ref!r} is not callable (it is a {type(obj).__name__})")
    return obj  # type: ignore[no-any-return]


def reference_of(obj: Any, what: str = "spawn") -> str:
    """``"module:qualname"`` naming a module-level function or class for another node.

    A string is returned as given (it already is a reference). Something
    defined in a script run as ``python -m package.module`` lives in
    ``__main__`` here; the other node knows it by its real module name.

    Raises:
        TypeError: ``obj`` is a lambda, a nested function or defined in a
            plain script, so no other node could import it.
    """
    if isinstance(obj, str):
        return obj
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if module == "__main__":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        module = spec.name if spec is not None else module
    if not module or not qualname or "<" in qualname or module == "__main__":
        raise TypeError(
            f"cannot {what} {qualname or obj!r} on another node: it must be defined at module "
            "level in a module that node can import (run scripts with 'python -m "
            "package.module'), or be named as 'package.module:function'"
        )
    return f"{module}:{qualname}"


def is_async_callable(fn: Any) -> bool:
    """Whether calling ``fn`` gives a coroutine: an ``async def`` function or method.

    Remote spawn runs only these (see ``docs/security.md``): a plain function
    such as ``time.sleep`` or ``os.system`` would run on the event loop
    thread and block the node, or do anything a shell can.
    """
    target = fn.func if hasattr(fn, "func") and not inspect.isroutine(fn) else fn
    return inspect.iscoroutinefunction(target)
