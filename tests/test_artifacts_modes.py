"""Artifacts keep the user's umask (colleagues on a shared machine can read them)."""

from __future__ import annotations

import os
import stat

import pytest

from interp.artifacts import atomic_path, make_temporary_dir, write_json_atomic, write_text_atomic


@pytest.fixture
def umask():
    def set_mask(mask: int) -> None:
        os.umask(mask)

    old = os.umask(0o022)
    yield set_mask
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_follow_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    assert mode(write_text_atomic(tmp_path / "a.txt", "x")) == expected
    assert mode(write_json_atomic(tmp_path / "b.json", {"a": 1})) == expected


def test_a_file_a_library_recreates_still_gets_the_umask_mode(tmp_path, umask):
    umask(0o022)
    with atomic_path(tmp_path / "w.bin") as tmp:
        tmp.unlink()  # as a library that writes a new file of its own would
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    assert mode(tmp_path / "w.bin") == 0o644


def test_temporary_folders_follow_the_umask(tmp_path, umask):
    umask(0o022)
    folder = make_temporary_dir(tmp_path / "run")
    assert folder.parent == tmp_path and folder.name.startswith(".run.")
    assert mode(folder) == 0o755


def test_a_failed_write_leaves_no_temporary_file(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "c.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []
