"""Worker processes for `posext resize --workers N`: each resizes whole files, one at a time.

Workers are spawned (no fork of a process that may hold CUDA or thread pools) and talk to the parent over one
pipe each. None outlives the parent: a worker gets SIGTERM when the parent is gone
(``signals.die_with_parent``) and, like the parent, discards the file in flight on SIGINT / SIGTERM and exits
128 + the signal number. When the parent stops, it sends SIGTERM to every worker and waits for them to exit,
so no temp file is left; a worker that does not exit within ``STOP_GRACE_SECONDS`` is killed and its temp
folder removed by the caller (``tempfiles.remove_leftovers``: its PID is then dead).
"""
import contextlib
import os
import signal
import sys
import threading
import time
from collections import deque
from multiprocessing import connection, get_context
from typing import Callable, Dict, List, Tuple

from .signals import Interrupted, critical, die_with_parent, stop_on_signals

STOP_GRACE_SECONDS = 30.0
POLL_SECONDS = 0.2


@contextlib.contextmanager
def _child_ignores_sigint():
    """Start a worker with SIGINT ignored, a disposition it keeps across exec: a Ctrl-C during its start-up
    (imports take seconds) then prints no KeyboardInterrupt traceback there; the worker's own handler replaces
    it once installed. Here SIGINT is blocked meanwhile, so a Ctrl-C for the parent waits instead of being
    dropped."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _worker_main(conn, parent_pid: int, target, options) -> None:
    die_with_parent(parent_pid)
    with stop_on_signals():
        try:
            from .file_job import resize_file

            while True:
                # Waiting in short steps: a signal that another thread (torch's) received only runs its
                # handler once this thread is back in Python code.
                while not conn.poll(POLL_SECONDS):
                    pass
                job = conn.recv()
                if job is None:
                    return
                report = resize_file(*job, target, options)
                with critical():
                    conn.send(report)
        except Interrupted as exc:
            # The file in flight is already discarded; skip the interpreter's teardown (seconds with torch
            # loaded) so the parent, which waits for its workers, stops promptly.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(exc.exit_code)
        except (EOFError, OSError):  # the parent closed the pipe: it is gone or stopping
            return


def _ended(process) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        return f"ended by {signal.Signals(-code).name}"
    if code is not None and code > 128 and code - 128 in {s.value for s in signal.Signals}:
        return f"stopped by {signal.Signals(code - 128).name}"
    return f"exited with code {code}"


class _Worker:
    def __init__(self, context, target, options):
        self.conn, child_conn = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child_conn, os.getpid(), target, options),
                                       name="posext-resize-worker", daemon=True)
        with _child_ignores_sigint():
            self.process.start()
        child_conn.close()
        self.job = None


def run_jobs(jobs: List[Tuple[str, str]], workers: int, target, options, on_report: Callable[[dict], None],
             failed_report: Callable[[str, str, str], dict]) -> None:
    """Resize ``jobs`` ((input, target) pairs) in ``workers`` processes; ``on_report`` gets each file's
    report, ``failed_report(input, target, reason)`` builds one for a file whose worker died. Stop signals
    raise :class:`Interrupted` here after every worker has exited."""
    context = get_context("spawn")
    pending = deque(jobs)
    pool: List[_Worker] = []
    spawn_budget = workers + len(jobs)  # every unexpected death costs a file, so this bounds respawning

    def spawn():
        nonlocal spawn_budget
        spawn_budget -= 1
        with critical():  # a worker is always in `pool` once started, so stop() reaches it
            pool.append(_Worker(context, target, options))

    try:
        for _ in range(min(workers, len(jobs))):
            spawn()
        while pending or any(w.job for w in pool):
            for w in pool:
                if w.job is None and pending:
                    w.job = pending.popleft()
                    try:
                        w.conn.send(w.job)
                    except OSError:
                        # died before its first job: the job goes back, the death is handled below
                        pending.appendleft(w.job)
                        w.job = None
            waiting: Dict[object, _Worker] = {}
            for w in pool:
                waiting[w.conn] = w
                waiting[w.process.sentinel] = w
            ready = connection.wait(list(waiting), POLL_SECONDS)  # short steps: see _worker_main
            ready_workers = list(dict.fromkeys(waiting[r] for r in ready))
            for w in ready_workers:
                report = None
                try:
                    if w.conn.poll():  # a report sent just before the worker ended still counts
                        report = w.conn.recv()
                except (EOFError, OSError):
                    pass
                if report is not None:
                    w.job = None
                    on_report(report)
                    continue
                _join_or_kill(w, STOP_GRACE_SECONDS)
                pool.remove(w)
                if w.job is not None:
                    on_report(failed_report(*w.job, f"the worker process {_ended(w.process)} while resizing "
                                                    f"this file"))
                if pending and spawn_budget > 0 and len(pool) < workers:
                    spawn()
                elif pending and not pool:
                    for job in pending:
                        on_report(failed_report(*job, "no worker process could be started"))
                    pending.clear()
        for w in pool:
            try:
                w.conn.send(None)
            except OSError:
                pass
        _join_all(pool, STOP_GRACE_SECONDS)
    except (Interrupted, KeyboardInterrupt):
        stop(pool)
        raise


def stop(pool: List[_Worker]) -> None:
    """SIGTERM every live worker (each discards its file in flight), wait for them, kill stragglers."""
    for w in pool:
        if w.process.is_alive():
            try:
                os.kill(w.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    _join_all(pool, STOP_GRACE_SECONDS)


def _join_or_kill(w: _Worker, timeout: float) -> None:
    w.process.join(timeout)
    if w.process.is_alive():
        w.process.kill()
        w.process.join()
    w.conn.close()


def _join_all(pool: List[_Worker], grace: float) -> None:
    deadline = time.monotonic() + grace
    for w in pool:
        _join_or_kill(w, max(0.0, deadline - time.monotonic()))
