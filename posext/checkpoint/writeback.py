"""Early writeback for long sequential writes: the disk writes a file while it is still being produced.

A copy that dirties the whole page cache first and fsyncs at the end spends the fsync waiting for all of
it; starting the write-out of each finished stretch as the next one is produced overlaps the two, and
waiting for the stretch before it keeps the dirty pages to about two stretches. Linux's
``sync_file_range`` does this without touching metadata (the final fsync still makes the file durable).
Elsewhere, or where the call is refused, the tracker does nothing and the final fsync does all the work.
"""
import ctypes
import ctypes.util
import sys
from typing import Optional

from .tempfiles import durable

STRETCH = 64 * 2 ** 20  # bytes written between two write-out requests
_WAIT_BEFORE, _WRITE, _WAIT_AFTER = 1, 2, 4  # SYNC_FILE_RANGE_* flags


def _sync_file_range():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    return call


_CALL = _sync_file_range()


class Writeback:
    """Tracks how far file descriptor ``fd`` has been written (``advance(end)`` after each write); every
    :data:`STRETCH` bytes it starts the write-out of the new stretch and waits for the one before it."""

    def __init__(self, fd: Optional[int]):
        self.fd = fd if _CALL is not None and durable() else None
        self.stretch = STRETCH
        self.started = self.waited = 0  # [waited, started) is being written out; [started, ...) is not yet

    def advance(self, end: int) -> None:
        if self.fd is None or end - self.started < self.stretch:
            return
        if not self._range(self.started, end, _WRITE):
            return
        if self.started > self.waited:
            self._range(self.waited, self.started, _WAIT_BEFORE | _WRITE | _WAIT_AFTER)
        self.waited, self.started = self.started, end

    def _range(self, start: int, end: int, flags: int) -> bool:
        if _CALL(self.fd, start, end - start, flags) == 0:
            return True
        self.fd = None  # refused (e.g. a pipe or an odd file system): leave it all to the final fsync
        return False
