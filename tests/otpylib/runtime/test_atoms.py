"""Atoms: one interned object per name, compared by identity, never equal to a str."""

from __future__ import annotations

import copy
import pickle
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otpylib.runtime import atoms
from otpylib.runtime.atoms import (
    DOWN,
    EXIT,
    KILL,
    KILLED,
    MAX_ATOM_LENGTH,
    NOCONNECTION,
    NODEDOWN,
    NODEUP,
    NOPROC,
    NORMAL,
    SHUTDOWN,
    TIMEOUT,
    TRAP_EXIT,
    Atom,
    atom,
)


def fresh_name() -> str:
    """A name no other test has made an atom of (the table is process-wide)."""
    return f"test_atoms_{uuid.uuid4().hex}"


def test_ensure_returns_the_same_object_for_the_same_name() -> None:
    name = fresh_name()
    first = atom.ensure(name)
    assert type(first) is Atom
    assert atom.ensure(name) is first
    # Built from a different str object with the same characters.
    assert atom.ensure("".join(list(name))) is first


def test_different_names_give_different_atoms() -> None:
    assert atom.ensure(fresh_name()) is not atom.ensure(fresh_name())
    assert atom.ensure("ok") != atom.ensure("error")


@pytest.mark.parametrize(
    ("constant", "name"),
    [
        (EXIT, "EXIT"),
        (DOWN, "DOWN"),
        (NORMAL, "normal"),
        (KILL, "kill"),
        (KILLED, "killed"),
        (SHUTDOWN, "shutdown"),
        (NOPROC, "noproc"),
        (NOCONNECTION, "noconnection"),
        (TIMEOUT, "timeout"),
        (TRAP_EXIT, "trap_exit"),
        (NODEUP, "nodeup"),
        (NODEDOWN, "nodedown"),
    ],
)
def test_predefined_atoms_are_the_interned_ones(constant: Atom, name: str) -> None:
    assert constant.name == name
    assert atom.ensure(name) is constant
    assert atom.exists(name) is constant


def test_predefined_atoms_are_all_exported() -> None:
    exported = {n for n in atoms.__all__ if n.isupper()}
    assert exported == {
        "DOWN",
        "EXIT",
        "KILL",
        "KILLED",
        "NOCONNECTION",
        "NODEDOWN",
        "NODEUP",
        "NOPROC",
        "NORMAL",
        "SHUTDOWN",
        "TIMEOUT",
        "TRAP_EXIT",
    }


def test_an_atom_is_not_equal_to_its_name() -> None:
    assert NORMAL != "normal"
    assert NORMAL != "normal"
    assert {NORMAL: 1}.get("normal") is None
    assert "normal" not in {NORMAL}


def test_atoms_work_as_dict_keys_and_set_members() -> None:
    name = fresh_name()
    table = {atom.ensure(name): "value"}
    assert table[atom.ensure(name)] == "value"
    assert atom.ensure(name) in {atom.ensure(name)}
    assert hash(atom.ensure(name)) == hash(atom.ensure(name))


def test_repr_is_colon_name_and_str_is_the_name() -> None:
    assert repr(NORMAL) == ":normal"
    assert str(NORMAL) == "normal"
    assert repr(EXIT) == ":EXIT"
    assert repr((DOWN, KILLED)) == "(:DOWN, :killed)"


def test_exists_finds_only_atoms_already_made() -> None:
    name = fresh_name()
    assert atom.exists(name) is None
    made = atom.ensure(name)
    assert atom.exists(name) is made


def test_table_grows_by_one_per_new_name_only() -> None:
    name = fresh_name()
    before = len(atom)
    atom.ensure(name)
    assert len(atom) == before + 1
    atom.ensure(name)
    atom.ensure("normal")
    assert len(atom) == before + 1


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (5, r"^atom names are str, got int: 5$"),
        (b"ok", r"^atom names are str, got bytes: b'ok'$"),
        (None, r"^atom names are str, got NoneType: None$"),
    ],
)
def test_a_name_that_is_not_a_str_is_refused(bad: object, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        atom.ensure(bad)  # type: ignore[arg-type]


def test_a_name_of_the_maximum_length_is_accepted() -> None:
    assert MAX_ATOM_LENGTH == 255
    name = ("x" * MAX_ATOM_LENGTH + fresh_name())[-MAX_ATOM_LENGTH:]
    assert atom.ensure(name).name == name


def test_a_name_longer_than_the_limit_is_refused_and_not_stored() -> None:
    name = "y" * (MAX_ATOM_LENGTH + 1)
    before = len(atom)
    with pytest.raises(ValueError, match=r"^atom name is 256 characters long; the limit is 255$"):
        atom.ensure(name)
    assert len(atom) == before
    assert atom.exists(name) is None


def test_copy_and_deepcopy_keep_the_interned_object() -> None:
    assert copy.copy(NORMAL) is NORMAL
    assert copy.deepcopy(NORMAL) is NORMAL
    nested = copy.deepcopy({"reason": [EXIT, (DOWN, KILLED)]})
    assert nested["reason"][0] is EXIT
    assert nested["reason"][1][0] is DOWN
    assert nested["reason"][1][1] is KILLED


# Bug: Atom.__reduce__ names the bound method atom.ensure, and pickling that
# pickles the atom table itself, whose threading.Lock cannot be pickled.
def test_pickle_round_trip_keeps_the_interned_object() -> None:
    assert pickle.loads(pickle.dumps(NORMAL)) is NORMAL
    assert pickle.loads(pickle.dumps((EXIT, KILLED)))[1] is KILLED


def test_a_pickled_atom_names_the_module_level_ensure() -> None:
    # A stable reference for pickles stored elsewhere: not the table object.
    assert Atom.__reduce__(NORMAL) == (atoms.ensure, ("normal",))
    assert atoms.ensure("normal") is NORMAL


# Bug: an Atom's name can be reassigned, so atom.ensure("ok").name can stop
# being "ok" for every holder of the interned object.
def test_an_atoms_name_cannot_be_reassigned() -> None:
    victim = atom.ensure(fresh_name())
    original = victim.name
    with pytest.raises(AttributeError):
        victim.name = "something else"
    assert victim.name == original


def test_an_atom_takes_no_new_attributes_and_loses_none() -> None:
    victim = atom.ensure(fresh_name())
    with pytest.raises(AttributeError, match=r"^atoms are immutable: cannot set 'extra' of :"):
        victim.extra = 1
    with pytest.raises(AttributeError, match=r"^atoms are immutable: cannot delete 'name' of :"):
        del victim.name
    assert atom.ensure(victim.name) is victim


def test_an_atom_cannot_be_constructed_directly() -> None:
    with pytest.raises(
        TypeError,
        match=r"^atoms are interned: get one with atom\.ensure\(name\), not Atom\(\.\.\.\)$",
    ):
        Atom()


def test_threads_racing_on_a_new_name_get_one_atom() -> None:
    name = fresh_name()
    barrier = threading.Barrier(8)

    def make() -> Atom:
        barrier.wait()
        return atom.ensure(name)

    with ThreadPoolExecutor(max_workers=8) as pool:
        made = list(pool.map(lambda _: make(), range(8)))
    assert all(a is made[0] for a in made)
    assert atom.exists(name) is made[0]


@given(st.text(max_size=MAX_ATOM_LENGTH))
def test_any_name_up_to_the_limit_interns_to_one_atom(name: str) -> None:
    made = atom.ensure(name)
    assert made.name == name
    assert atom.ensure(name) is made
    assert atom.exists(name) is made
    assert repr(made) == ":" + name
