"""The version of otpylib (and otpy-node): the one place it is written.

``pyproject.toml`` reads it from here (hatch's version source), and
``otpylib.__version__`` re-exports it.
"""

__all__ = ["__version__"]

#: PEP 440 version of this source tree.
__version__ = "0.1.0"
