"""Checkpoint files as files: their format by name, what is not a regular file, and atomic writes.

Free of torch: the command sorts and checks its inputs and targets before torch loads. Reading and writing
the tensors inside is ``io.py``.
"""
import os
import stat
import warnings
from typing import Callable

from . import storage
from .signals import critical
from .tempfiles import discard, fsync_file, fsync_folder, lock_folder, make_temp_folder

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors", ".npz")


class CheckpointError(Exception):
    """A file that cannot be read or written as a checkpoint; the message says why."""


def file_format(path: str) -> str:
    lower = path.lower()
    if lower.endswith(".safetensors"):
        return "safetensors"
    if lower.endswith(".npz"):
        return "npz"
    return "torch"


def file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def require_regular_file(path: str) -> int:
    """The file's size; CheckpointError for anything that is not a regular file (a FIFO would block the read
    forever, a device never ends). A URL is an object of its store."""
    if storage.is_url(path):
        try:
            return storage.size(path)
        except (storage.StorageError, OSError) as exc:
            raise CheckpointError(f"cannot read: {exc}") from None
    try:
        st = os.stat(path)
    except OSError as exc:
        raise CheckpointError(f"cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{file_kind(st.st_mode)}, not a regular file: not read")
    return st.st_size


def atomic_write_stream(path: str, write: Callable, staged=None) -> int:
    """:func:`atomic_write` for a writer of a binary file object; a URL's bytes stream into its store.
    With ``staged`` (see :func:`atomic_write`) the writer gets the staged temp file, opened for update."""
    if storage.is_url(path):
        return _write_url(path, write, to_path=False)

    def write_file(tmp):
        with open(tmp, "r+b" if staged is not None else "wb") as f:
            write(f)

    return atomic_write(path, write_file, staged)


def _write_url(path, write, to_path):
    try:
        return storage.write_url(path, write, to_path=to_path)
    except storage.StorageError as exc:
        raise CheckpointError(f"cannot write: {exc}") from None


def atomic_write(path: str, write: Callable[[str], None], staged=None) -> int:
    """Write `path` through a temp folder beside it, fsync, then rename into place: readers see the old file
    or the whole new one, never a part. The temp folder (``tempfiles``: owner PID in its name, locked while in
    use) is removed on any error and on a stop signal (``signals``); creating it and the rename are critical
    sections, so a signal either discards the write or lets the rename finish. The temp file keeps the final
    base name, so formats that record it (torch.save's zip records) come out identical. A URL is written
    locally the same way, then uploaded to a temp object and moved onto the target (``storage``).

    ``staged``: a temp folder already made for this target, with its temp file begun (``head_start``); this
    write takes it over (``staged.hand_over()``) and it ends like any other."""
    if storage.is_url(path):
        return _write_url(path, write, to_path=True)
    folder = os.path.dirname(os.path.abspath(path))
    tmp_dir = lock_fd = None
    try:
        with critical():
            try:
                if staged is not None:
                    tmp_dir, lock_fd = staged.hand_over()
                else:
                    tmp_dir = make_temp_folder(folder)
                    lock_fd = lock_folder(tmp_dir)
            except OSError as exc:
                raise CheckpointError(f"cannot write to {folder}: {exc.strerror or exc}") from None
        tmp = os.path.join(tmp_dir, os.path.basename(path))
        write(tmp)
        fsync_file(tmp)
        size = os.path.getsize(tmp)
        with critical():
            os.replace(tmp, path)
    finally:
        if staged is not None:
            staged.stop()  # its copy must not outlive the temp folder
        with critical():
            discard(tmp_dir, lock_fd)
    if not fsync_folder(folder):  # make the rename itself durable
        warnings.warn(f"could not fsync folder {folder}", RuntimeWarning, stacklevel=2)
    return size
