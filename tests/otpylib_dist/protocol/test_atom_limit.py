"""Atoms from peers are bounded: past ``atom.untrusted_limit`` a new one is refused."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import msgspec
import pytest

from otpylib.runtime.atoms import AtomLimitExceeded, atom
from otpylib_dist.protocol import shapes
from otpylib_dist.protocol.codec import decode_term, encode_term
from otpylib_dist.protocol.errors import AtomLimitReached, RemoteProtocolError


@pytest.fixture
def room_for_two() -> Iterator[None]:
    """Let untrusted input create two more atoms; restore the limit afterwards."""
    saved = atom.untrusted_limit
    atom.untrusted_limit = atom.untrusted_count + 2
    yield
    atom.untrusted_limit = saved


def _fresh() -> str:
    return "peer_atom_" + secrets.token_hex(8)


def _wire_with_new_atom(shaped: bool) -> tuple[str, bytes]:
    """Bytes of a term holding an atom this process has never created (as a peer would send)."""
    name = _fresh()
    placeholder = atom.ensure("x" * len(name))  # same length, so the name can be patched in
    term = encode_term((placeholder, 1) if shaped else {"k": [placeholder]})
    data = msgspec.msgpack.encode(term)
    assert data.count(placeholder.name.encode()) == 1
    return name, data.replace(placeholder.name.encode(), name.encode())


def test_untrusted_atoms_stop_at_the_limit(room_for_two: None) -> None:
    first, second, third = _fresh(), _fresh(), _fresh()
    assert atom.ensure_untrusted(first) is atom.ensure(first)
    atom.ensure_untrusted(second)
    with pytest.raises(AtomLimitExceeded, match=r"^atom table full: .* limit \(atom\.untrusted_li"):
        atom.ensure_untrusted(third)
    assert atom.exists(third) is None


def test_existing_atoms_are_always_found(room_for_two: None) -> None:
    atom.untrusted_limit = atom.untrusted_count  # full
    assert atom.ensure_untrusted("EXIT") is atom.ensure("EXIT")


def test_the_programs_own_atoms_are_never_refused(room_for_two: None) -> None:
    atom.untrusted_limit = atom.untrusted_count
    name = _fresh()
    assert atom.ensure(name).name == name
    assert atom.ensure_untrusted(name) is atom.ensure(name)


def test_bad_names_count_nothing(room_for_two: None) -> None:
    before = atom.untrusted_count
    with pytest.raises(ValueError, match="limit is 255"):
        atom.ensure_untrusted("x" * 256)
    assert atom.untrusted_count == before


@pytest.mark.parametrize("shaped", [True, False], ids=["shaped", "tagged"])
def test_decode_raises_atom_limit_reached_a_remote_protocol_error(
    room_for_two: None, shaped: bool
) -> None:
    atom.untrusted_limit = atom.untrusted_count
    name, data = _wire_with_new_atom(shaped)
    with pytest.raises(AtomLimitReached, match="atom table full") as caught:
        decode_term(data)
    assert isinstance(caught.value, RemoteProtocolError)  # Connection._payload drops it
    assert atom.exists(name) is None
    assert name not in shapes._atoms_by_name


@pytest.mark.parametrize("shaped", [True, False], ids=["shaped", "tagged"])
def test_decode_creates_atoms_below_the_limit(room_for_two: None, shaped: bool) -> None:
    name, data = _wire_with_new_atom(shaped)
    value = decode_term(data)
    found = atom.exists(name)
    assert found is not None
    assert value == ((found, 1) if shaped else {"k": [found]})
