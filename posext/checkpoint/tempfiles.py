"""The temp folders that atomic writes go through, and the leftovers of runs that were killed.

Each write goes through ``.posext-tmp-<pid>-<random>/`` beside its target: the writer's PID in the name and
an exclusive flock on the folder while it is in use. A process killed outright (SIGKILL, power loss) leaves
that folder behind. Such leftovers are never read as checkpoints (:func:`is_temp_path`), and
:func:`remove_leftovers` deletes the ones whose owner is gone: the PID is not running and nobody holds the
lock (the lock also covers PID namespaces that cannot see each other's processes). Nothing else is ever
removed.
"""
import contextlib
import contextvars
import os
import re
import shutil
import tempfile
from typing import List, Optional

try:
    import fcntl
except ImportError:  # not POSIX: no locks, and no leftover is removed
    fcntl = None

TEMP_PREFIX = ".posext-tmp-"
_OWNED_NAME = re.compile(r"^\.posext-tmp-(\d+)-[A-Za-z0-9_]+$")


def is_temp_path(path: str) -> bool:
    """Whether ``path`` is or lies inside a temp folder of an atomic write."""
    parts = os.path.normpath(os.path.abspath(path)).split(os.sep)
    return any(part.startswith(TEMP_PREFIX) for part in parts)


def make_temp_folder(folder: str) -> str:
    return tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir=folder)


def lock_folder(path: str) -> Optional[int]:
    """An exclusive flock on the folder itself; returns the descriptor to close when done (None: no locks
    here)."""
    if fcntl is None:
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # a file system without flock: the PID in the name still guards the folder
        pass
    return fd


def discard(path: Optional[str], lock_fd: Optional[int]) -> None:
    """Remove the temp folder ``path`` (if any) and release its lock: what every writer does on the way out,
    done or not. The caller holds off signals (``signals.critical``) around it."""
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)
    if lock_fd is not None:
        os.close(lock_fd)


_staging = contextvars.ContextVar("posext_staging", default=False)


@contextlib.contextmanager
def staging_writes():
    """Writes made in this context are staging copies (a store target's result, uploaded and then removed):
    atomic as ever, but not forced to disk (no fsync, no early writeback); the store's copy is the one that
    lasts."""
    token = _staging.set(True)
    try:
        yield
    finally:
        _staging.reset(token)


def durable() -> bool:
    """Whether writes are to reach the disk before they count as done (everywhere but staging copies)."""
    return not _staging.get()


def fsync_file(path: str) -> None:
    """fsync the file at ``path`` (nothing for staging copies, see :func:`staging_writes`)."""
    if not durable():
        return
    with open(path, "rb") as f:  # POSIX fsync needs no write access: copies of read-only files too
        os.fsync(f.fileno())


def fsync_folder(folder: str) -> bool:
    """fsync the folder itself, so that a rename into it is durable; False where the file system refuses."""
    if not durable():
        return True
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        return False
    return True


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: someone else's live process
        return True
    return True


def _lock_if_free(path: str) -> Optional[int]:
    """The folder's descriptor, locked, when no live process holds its lock; else None."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:  # no flock on this file system: the dead PID decides
        pass
    return fd


def _owned_folders(folder: str):
    """(path, owner PID) of the temp folders directly in ``folder``."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        match = _OWNED_NAME.match(name)
        path = os.path.join(folder, name)
        if match and int(match.group(1)) > 0 and not os.path.islink(path) and os.path.isdir(path):
            yield path, int(match.group(1))


def leftovers(folder: str) -> List[str]:
    """Temp folders in ``folder`` owned by this process or by one that is no longer running."""
    if os.name != "posix":  # os.kill(pid, 0) is no liveness test elsewhere
        return []
    return [path for path, pid in _owned_folders(folder) if pid == os.getpid() or not _pid_running(pid)]


def remove_leftovers(folder: str) -> List[str]:
    """Remove the temp folders in ``folder`` (not below it) left by killed posext processes; returns their
    paths.

    Only names of the form ``.posext-tmp-<pid>-<random>`` that are real folders, whose PID is not running and
    whose lock is free, are removed."""
    if fcntl is None or os.name != "posix":
        return []
    removed = []
    for path, pid in _owned_folders(folder):
        if pid == os.getpid() or _pid_running(pid):
            continue
        fd = _lock_if_free(path)
        if fd is None:
            continue
        try:
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)
        if not os.path.exists(path):
            removed.append(path)
    return removed
