"""The cluster's shared secret (the *cookie*) and the public id derived from it.

Every node of a cluster holds the same cookie and proves it knows it during the
handshake without sending it. This module finds the cookie, creates one the
first time a user runs a node, and refuses cookie files that other local users
could read, since anyone holding the cookie can run code on every node.

Where the cookie comes from, first match wins:

1. the ``cookie`` argument (``--cookie`` on the command line);
2. the ``OTPY_COOKIE`` environment variable (containers, Kubernetes secrets);
3. the file ``~/.otpylib.cookie`` (or ``path``), created with a random value
   and mode 0400 when it does not exist.

Differs from Erlang: the file is called ``.otpylib.cookie`` rather than
``.erlang.cookie``, and a group-readable file is refused, not just a
world-readable one.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import secrets
import stat
from pathlib import Path
from typing import Final

from otpylib_dist.errors import DistError

logger = logging.getLogger(__name__)

__all__ = [
    "COOKIE_ENV",
    "COOKIE_FILE_NAME",
    "CookieError",
    "cluster_id",
    "default_cookie_path",
    "load_cookie",
]

#: Environment variable consulted when no cookie is given explicitly.
COOKIE_ENV: Final = "OTPY_COOKIE"

#: Name of the cookie file in the user's home directory.
COOKIE_FILE_NAME: Final = ".otpylib.cookie"

#: Bytes of randomness in a generated cookie: 32 bytes (256 bits) is far beyond
#: guessing, and ``token_urlsafe`` keeps it printable for ``--cookie`` and env use.
_GENERATED_COOKIE_BYTES: Final = 32

#: Permission bits that must be clear on a cookie file: any access by the group
#: or by others.
_FORBIDDEN_MODE_BITS: Final = stat.S_IRWXG | stat.S_IRWXO

#: Domain-separation label for ``cluster_id``, so the id can never equal a
#: digest computed from the cookie for another purpose (e.g. a handshake proof).
_CLUSTER_ID_LABEL: Final = b"otpylib cluster-id v1"

#: PBKDF2 rounds for ``cluster_id``. The id is broadcast on the LAN by mDNS, so
#: a human-chosen cookie must not be cheap to guess from it offline; this costs
#: tens of milliseconds once per process and a lot per guess.
_CLUSTER_ID_ROUNDS: Final = 100_000

#: Hex digits kept of the digest: 64 bits tell clusters apart with no realistic
#: chance of an accidental collision, and keep the mDNS TXT record short.
_CLUSTER_ID_HEX_DIGITS: Final = 16


class CookieError(DistError):
    """Raised when no usable cookie can be found or a cookie file is unsafe.

    The message names the file or variable and says how to fix it; it never
    contains the cookie itself.
    """


def default_cookie_path() -> Path:
    """Return ``~/.otpylib.cookie``, the file used when no cookie is given.

    A function rather than a constant so that a changed ``HOME`` (tests,
    services running as another user) is honoured.
    """
    return Path.home() / COOKIE_FILE_NAME


def load_cookie(
    cookie: str | None = None,
    *,
    path: Path | None = None,
    use_env: bool = True,
) -> str:
    """Return the cluster cookie: the argument, else ``OTPY_COOKIE``, else the file.

    The file (``path``, default ``~/.otpylib.cookie``) is created with a random
    cookie and mode 0400 when it is missing, so a first node "just works" and
    later nodes of the same user share its cookie. To join nodes of different
    users or machines, give them all the same cookie.

    Args:
        cookie: an explicit cookie; wins over everything else.
        path: the cookie file to read or create instead of the default.
        use_env: whether to consult ``OTPY_COOKIE``; pass ``False`` when the
            user named a file explicitly (``--cookie-file``), so the file wins.

    Returns:
        The cookie, without surrounding whitespace.

    Raises:
        CookieError: the cookie is empty, or the file is readable or writable
            by group or others, empty, or cannot be read or created.
    """
    if cookie is not None:
        value = cookie.strip()
        if not value:
            raise CookieError("the cookie given is empty; pass a non-empty secret")
        return value
    if use_env:
        env = os.environ.get(COOKIE_ENV)
        if env is not None:
            value = env.strip()
            if not value:
                raise CookieError(
                    f"{COOKIE_ENV} is set but empty; set it to the cluster's secret or unset it "
                    "to use the cookie file"
                )
            return value
    file = path if path is not None else default_cookie_path()
    return _read_or_create(file)


def _read_or_create(file: Path) -> str:
    try:
        return _read_cookie_file(file)
    except FileNotFoundError:
        pass
    value = secrets.token_urlsafe(_GENERATED_COOKIE_BYTES)
    try:
        # O_EXCL: if another node created the file meanwhile, use theirs.
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    except FileExistsError:
        return _read_cookie_file(file)
    except OSError as exc:
        raise CookieError(
            f"cannot create cookie file {file}: {exc.strerror}; create it yourself with a "
            f"secret on one line and run chmod 400 {file}, or set {COOKIE_ENV}"
        ) from exc
    try:
        # The umask may have cleared bits but never adds any; make it exact.
        os.fchmod(fd, 0o400)
        os.write(fd, value.encode("ascii") + b"\n")
    finally:
        os.close(fd)
    logger.info("created cookie file %s (mode 0400)", file)
    return value


def _read_cookie_file(file: Path) -> str:
    """Read and check a cookie file; FileNotFoundError passes through."""
    try:
        fd = os.open(file, os.O_RDONLY)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise CookieError(
            f"cookie file {file} cannot be read: {exc.strerror}; make it readable by the "
            f"user running the node (chmod 400 {file}) or set {COOKIE_ENV}"
        ) from exc
    try:
        # fstat on the open descriptor: the file checked is the file read.
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CookieError(
                f"cookie file {file} is not a regular file; remove it or use --cookie"
            )
        bad = info.st_mode & _FORBIDDEN_MODE_BITS
        if bad and os.name == "posix":
            raise CookieError(
                f"cookie file {file} is {_who_can(bad)} "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); run chmod 400 {file}"
            )
        try:
            data = _read_all(fd)
        except OSError as exc:
            raise CookieError(f"cookie file {file} cannot be read: {exc.strerror}") from exc
    finally:
        os.close(fd)
    try:
        value = data.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise CookieError(
            f"cookie file {file} is not UTF-8 text; put the secret on one line"
        ) from exc
    if not value:
        raise CookieError(
            f"cookie file {file} is empty; put the cluster's secret in it, or delete it to "
            "have a random one created"
        )
    return value


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _who_can(bits: int) -> str:
    """Describe permission bits of group/others in words for the error message."""
    verbs = []
    if bits & (stat.S_IRGRP | stat.S_IROTH):
        verbs.append("readable")
    if bits & (stat.S_IWGRP | stat.S_IWOTH):
        verbs.append("writable")
    if bits & (stat.S_IXGRP | stat.S_IXOTH) and not verbs:
        verbs.append("accessible")
    whom = []
    if bits & stat.S_IRWXG:
        whom.append("its group")
    if bits & stat.S_IRWXO:
        whom.append("others")
    return f"{' and '.join(verbs)} by {' and '.join(whom)}"


def cluster_id(cookie: str) -> str:
    """Return a short public id of the cluster that uses ``cookie``.

    mDNS announcements carry this id so that nodes of different clusters on
    one network ignore each other, without revealing the cookie: the id is a
    one-way, deliberately slow function of it (PBKDF2-HMAC-SHA256 with a fixed
    domain-separation label as salt), truncated to 16 hex digits. Equal
    cookies give equal ids on every machine and every run.

    Raises:
        CookieError: the cookie is empty.
    """
    if not cookie:
        raise CookieError("cannot derive a cluster id from an empty cookie")
    return _cluster_id(cookie)


@functools.lru_cache(maxsize=8)
def _cluster_id(cookie: str) -> str:
    digest = hashlib.pbkdf2_hmac(
        "sha256", cookie.encode("utf-8"), _CLUSTER_ID_LABEL, _CLUSTER_ID_ROUNDS
    )
    return digest.hex()[:_CLUSTER_ID_HEX_DIGITS]
