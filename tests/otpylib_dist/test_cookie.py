"""The cookie: where it comes from, how its file is made and checked, its public id."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from otpylib_dist.cookie import COOKIE_ENV, CookieError, cluster_id, load_cookie

posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
not_root = pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads files whatever their mode"
)


@pytest.fixture(autouse=True)
def _no_env_cookie(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(COOKIE_ENV, raising=False)
    # Never touch the real ~/.otpylib.cookie.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()


def _write(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_explicit_cookie_wins_over_env_and_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(COOKIE_ENV, "from-env")
    path = _write(tmp_path / "c", "from-file\n", 0o400)
    assert load_cookie("explicit", path=path) == "explicit"


def test_env_wins_over_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(COOKIE_ENV, "  from-env\n")
    path = _write(tmp_path / "c", "from-file\n", 0o400)
    assert load_cookie(path=path) == "from-env"


def test_use_env_false_reads_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(COOKIE_ENV, "from-env")
    path = _write(tmp_path / "c", "from-file\n", 0o400)
    assert load_cookie(path=path, use_env=False) == "from-file"


def test_empty_explicit_cookie_is_refused() -> None:
    with pytest.raises(CookieError, match=r"^the cookie given is empty; pass a non-empty secret$"):
        load_cookie("  ")


def test_empty_env_cookie_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(COOKIE_ENV, "")
    with pytest.raises(CookieError, match=rf"^{COOKIE_ENV} is set but empty; "):
        load_cookie()


@posix_only
def test_missing_file_is_created_with_mode_0400_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "cookie"
    first = load_cookie(path=path)
    assert len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o400
    assert load_cookie(path=path) == first


@posix_only
def test_default_path_is_in_home(tmp_path: Path) -> None:
    value = load_cookie()
    created = tmp_path / "home" / ".otpylib.cookie"
    assert created.read_text().strip() == value


@posix_only
def test_generated_cookies_differ(tmp_path: Path) -> None:
    assert load_cookie(path=tmp_path / "a") != load_cookie(path=tmp_path / "b")


@posix_only
@pytest.mark.parametrize(
    ("mode", "who"),
    [
        (0o444, "readable by its group and others"),
        (0o440, "readable by its group"),
        (0o404, "readable by others"),
        (0o402, "writable by others"),
        (0o460, "readable and writable by its group"),
    ],
)
def test_file_open_to_group_or_others_is_refused(tmp_path: Path, mode: int, who: str) -> None:
    path = _write(tmp_path / "cookie", "secret\n", mode)
    expected = rf"^cookie file {re.escape(str(path))} is {who} \(mode 0{mode:o}\); run chmod 400 "
    with pytest.raises(CookieError, match=expected + re.escape(str(path)) + "$"):
        load_cookie(path=path)


@posix_only
def test_error_never_contains_the_cookie(tmp_path: Path) -> None:
    path = _write(tmp_path / "cookie", "very-secret-value\n", 0o644)
    with pytest.raises(CookieError) as info:
        load_cookie(path=path)
    assert "very-secret-value" not in str(info.value)


@posix_only
def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "cookie", "\n  \n", 0o400)
    with pytest.raises(CookieError, match=rf"^cookie file {re.escape(str(path))} is empty; "):
        load_cookie(path=path)


@posix_only
@not_root
def test_unreadable_file_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "cookie", "secret\n", 0o000)
    with pytest.raises(CookieError, match=rf"^cookie file {re.escape(str(path))} cannot be read: "):
        load_cookie(path=path)


def test_a_directory_is_not_a_cookie_file(tmp_path: Path) -> None:
    path = tmp_path / "dir"
    path.mkdir(mode=0o700)
    with pytest.raises(CookieError, match=r"is not a regular file"):
        load_cookie(path=path)


def test_uncreatable_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "no-such-dir" / "cookie"
    with pytest.raises(CookieError, match=rf"^cannot create cookie file {re.escape(str(path))}: "):
        load_cookie(path=path)


def test_cluster_id_is_stable_short_hex_and_hides_the_cookie() -> None:
    cid = cluster_id("my-cookie")
    assert re.fullmatch(r"[0-9a-f]{16}", cid)
    assert cid == cluster_id("my-cookie")
    assert cid != cluster_id("my-cookie2")
    assert "my-cookie" not in cid


def test_cluster_id_of_empty_cookie_is_refused() -> None:
    with pytest.raises(CookieError, match=r"^cannot derive a cluster id from an empty cookie$"):
        cluster_id("")
