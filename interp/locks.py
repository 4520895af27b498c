"""One writer per output folder: an exclusive lock file holding the writer's pid, host and command.

Every stage takes :func:`folder_lock` on its output folder before it writes there. A second
writer gets a :class:`~interp.errors.VSFAError` naming the holder (exit 2 from the CLI). A lock
left by a process that died on this host (its pid is gone) is taken over with a warning; a lock
of another host is never broken, since its pid cannot be checked from here. The lock is created
with ``O_CREAT | O_EXCL``, so exactly one of two racing writers wins it. Locks are re-entrant
within a process (a runner holding its folder may call stages that lock subfolders or the same
folder).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from interp.errors import VSFAError, warn

LOCK = ".vsfa.lock"

_HELD: dict[str, int] = {}
_HELD_GUARD = threading.Lock()


def _holder() -> dict[str, object]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _read(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _create(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(_holder(), handle)
        handle.flush()
        os.fsync(handle.fileno())
    return True


def _describe(holder: dict[str, object] | None) -> str:
    if holder is None:
        return "a process whose lock file is unreadable"
    return f"pid {holder.get('pid')} on {holder.get('host')} ({holder.get('command') or '?'})"


def acquire(folder: str | os.PathLike) -> Path:
    """Take the lock of ``folder`` (created if missing); raise when another writer holds it."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise VSFAError(f"output folder {folder} is a file; give a folder path")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    for _ in range(3):
        if _create(path):
            return path
        holder = _read(path)
        if holder is None:  # being written by its creator right now, or left empty by a crash
            time.sleep(0.05)
            holder = _read(path)
        stale = holder is None or (
            holder.get("host") == socket.gethostname()
            and isinstance(holder.get("pid"), int)
            and not _alive(int(holder["pid"]))  # type: ignore[arg-type]
        )
        if not stale:
            raise VSFAError(
                f"{folder} is being written by {_describe(holder)}; wait for it to finish or "
                f"choose another output folder (remove {path} if that process is gone)"
            )
        warn(f"{folder}: taking over the stale lock of {_describe(holder)}")
        path.unlink(missing_ok=True)
    raise VSFAError(f"{folder}: could not take the lock {path}; another writer keeps taking it")


def release(path: Path) -> None:
    """Remove a lock this process holds (leaves another holder's lock alone)."""
    holder = _read(path)
    if holder is not None and holder.get("pid") == os.getpid():
        path.unlink(missing_ok=True)


@contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold ``folder``'s lock for the block (re-entrant within this process)."""
    key = str(Path(folder).absolute())
    with _HELD_GUARD:
        if key not in _HELD:
            acquire(folder)
        _HELD[key] = _HELD.get(key, 0) + 1
    try:
        yield Path(folder) / LOCK
    finally:
        with _HELD_GUARD:
            _HELD[key] -= 1
            if _HELD[key] == 0:
                del _HELD[key]
                release(Path(folder) / LOCK)
