"""Stopping on SIGINT / SIGTERM, and worker processes that never outlive their parent.

While :func:`stop_on_signals` is active, the first SIGINT or SIGTERM raises :class:`Interrupted` in the main
thread, so the file in flight is discarded by the ``finally`` blocks that own its temp folder, and the command
exits 128 + the signal number (130 for SIGINT, 143 for SIGTERM). Later signals are ignored: the first one is
already unwinding. A short :func:`critical` section (creating a temp folder and taking note of it, the final
rename, a report sent to the parent) is never split: a signal that arrives inside it acts when it ends.
SIGINT is handled even when it was inherited as ignored (a background job of a non-interactive shell), so
``kill -INT`` stops a run the same way everywhere.
"""
import contextlib
import os
import signal
import sys
import threading
import time

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
PARENT_POLL_SECONDS = 0.5
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class Interrupted(BaseException):
    """A stop signal arrived. A BaseException, like KeyboardInterrupt, so that per-file ``except Exception``
    handlers do not take it for a bad file."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _StopState:
    def __init__(self):
        self.signum = None      # the first stop signal received, None while running
        self.raised = False     # Interrupted was raised for it
        self.critical = 0       # depth of critical sections


_state = _StopState()


def _raise_stop():
    _state.raised = True
    raise Interrupted(_state.signum)


def _on_stop_signal(signum, frame):
    if _state.signum is not None:
        return
    _state.signum = signum
    if not _state.critical:
        _raise_stop()


def stopping() -> bool:
    return _state.signum is not None


@contextlib.contextmanager
def critical():
    """A section a stop signal must not split; the signal is acted on when the section ends."""
    _state.critical += 1
    try:
        yield
    finally:
        _state.critical -= 1
        if not _state.critical and _state.signum is not None and not _state.raised:
            _raise_stop()


def raise_if_stopping():
    """Act on a stop signal that arrived while an exception was being handled."""
    if _state.signum is not None and not _state.raised and not _state.critical:
        _raise_stop()


@contextlib.contextmanager
def stop_on_signals():
    """Install the stop handlers for the duration (in the main thread; elsewhere signals cannot be handled
    and this does nothing), then put the previous handlers back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    global _state
    _state = _StopState()
    previous = {signum: signal.signal(signum, _on_stop_signal) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def die_with_parent(parent_pid: int) -> None:
    """In a worker: get SIGTERM when the parent process is gone, however it ended (SIGKILL included).

    Linux delivers it through prctl(PR_SET_PDEATHSIG); a thread polling the parent PID covers other systems
    and a parent that died before the prctl call."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):
            pass

    def watch_parent():
        if hasattr(signal, "pthread_sigmask"):  # stop signals go to the main thread, which acts on them
            signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_SECONDS)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch_parent, name="posext-parent-watch", daemon=True).start()
