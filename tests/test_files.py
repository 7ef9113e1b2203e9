"""Atomic writes: a failed write leaves the old file and no temporary file."""
import pickle

import pytest

from graphprune.files import atomic_path, write_atomic, write_text_atomic


def test_write_replaces_and_creates_folder(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    write_text_atomic(target, "one")
    write_text_atomic(target, "two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.txt"]


def test_failed_writer_keeps_old_file(tmp_path):
    target = tmp_path / "m.pkl"
    target.write_bytes(b"good" * 1000)

    def bad(tmp):
        tmp.write_bytes(b"half")
        pickle.dumps(lambda: 0)  # unpicklable, like a module with a lambda hook

    with pytest.raises(Exception):
        write_atomic(target, bad)
    assert target.read_bytes() == b"good" * 1000
    assert [p.name for p in tmp_path.iterdir()] == ["m.pkl"]


def test_interrupt_keeps_old_file(tmp_path):
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"new, partial")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_new_file_gets_the_umask_mode_and_a_replaced_file_keeps_its_own(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        fresh = write_text_atomic(tmp_path / "new.txt", "x")
        assert fresh.stat().st_mode & 0o777 == 0o644
        kept = tmp_path / "kept.txt"
        kept.write_text("old")
        kept.chmod(0o600)
        write_text_atomic(kept, "new")
        assert kept.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(umask)
