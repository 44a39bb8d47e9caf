"""A head start for the first safetensors file of ``posext resize``: its untouched tensors are copied while
torch loads.

Importing torch takes seconds, and so does copying a checkpoint of a few gigabytes; one after the other they
add up. Yet the plan of a safetensors file needs only its header (names, dtypes and shapes, stood in for by
``header_shapes.StoredShape``), and so does the layout of the result: each untouched tensor's offset follows
from the new shapes of the tables that change. So the command plans the file from its header before it
imports torch, makes the target's temp folder and forks a process that copies the untouched tensors to their
final offsets; then torch loads and the file is resized as always. The write keeps the copied tensors only
if the header it is about to write is the one foreseen here (``safetensors_io.write``): a plan that needed
values the header lacks (a stale ``position_ids``), or any other difference, costs the copy, never the
result.
"""
import os
import signal
import stat
from typing import Dict, Optional, Tuple

from .files import file_format
from .header_shapes import DTYPES, StoredShape
from .safetensors_format import FormatError, header_bytes, kernel_copy, ordered, read_header
from .signals import STOP_SIGNALS, critical, die_with_parent
from .storage import is_url
from .tempfiles import discard, lock_folder, make_temp_folder
from .writeback import Writeback


def new_shape(finding, new, shape: Tuple[int, ...]) -> Optional[Tuple[int, ...]]:
    """The shape the finding's action gives a tensor of ``shape`` at new grid ``new`` (see ``apply.py``);
    None for actions whose result is known only by running them."""
    if finding.action in ("resample", "regenerate_sincos"):
        if finding.layout == "nhwc":
            return (shape[0],) + tuple(new) + (shape[3],)
        if finding.layout == "nchw":
            return tuple(shape[:2]) + tuple(new)
        if finding.layout in ("tokens", "tokens_unbatched"):
            rows = finding.num_prefix_tokens + new[0] * new[1] + finding.num_suffix_tokens
            return tuple(shape[:-2]) + (rows, shape[-1])
        return None
    if finding.action == "regenerate_position_ids":
        rows = finding.num_prefix_tokens + new[-2] * new[-1] + finding.num_suffix_tokens
        return tuple(shape[:-1]) + (rows,)
    return None


class HeadStart:
    """The temp folder of one target and a child process copying the source's untouched tensors into its
    temp file.

    ``header`` is the header the result is foreseen to have and ``copies`` the (offset in the result,
    source start, source end) of each tensor to copy. The write that takes the folder over
    (``files.atomic_write``) asks :meth:`keep`; :meth:`close` discards whatever was not taken over. The copy
    runs in a forked process, not a thread: a thread would wait for the GIL after every system call while
    the import of torch holds it, and take longer than the import."""

    def __init__(self, path: str, output: str, header: bytes, copies, tmp_dir: str, lock_fd: Optional[int]):
        self.path, self.header, self.copies = path, header, copies
        self.tmp_dir, self.lock_fd = tmp_dir, lock_fd
        self.tmp = os.path.join(tmp_dir, os.path.basename(output))
        self.pid: Optional[int] = None

    def start(self) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the copier: system calls only, then out without the interpreter's teardown
            code = 1
            try:
                for signum in STOP_SIGNALS:  # a stop signal ends the copy; the parent cleans up
                    signal.signal(signum, signal.SIG_DFL)
                die_with_parent(parent)
                code = 0 if self._copy() else 1
            finally:
                os._exit(code)
        self.pid = pid

    def _copy(self) -> bool:
        """Every copy done (False: an error, or no in-kernel copy between these files)."""
        try:
            src = os.open(self.path, os.O_RDONLY)
            try:
                out = os.open(self.tmp, os.O_WRONLY)
                try:
                    writeback = Writeback(out)
                    return all(kernel_copy(src, out, start, end, pos, writeback)
                               for pos, start, end in self.copies)
                finally:
                    os.close(out)
            finally:
                os.close(src)
        except OSError:
            return False

    def _wait(self, kill: bool) -> bool:
        """Reap the copier (killed first when ``kill``); whether it did every copy."""
        if self.pid is None:
            return False
        if kill:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _, status = os.waitpid(self.pid, 0)
        self.pid = None
        return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and not kill

    def keep(self, header: bytes) -> frozenset:
        """The copies in place once the copier is done, when ``header`` is the one foreseen; else none (the
        copier is stopped). A copy that failed is no error here: the write copies those bytes itself."""
        if header != self.header:
            self.stop()
            return frozenset()
        return frozenset(self.copies) if self._wait(kill=False) else frozenset()

    def stop(self) -> None:
        self._wait(kill=True)

    def hand_over(self) -> Tuple[str, Optional[int]]:
        """(temp folder, its lock) for the write that takes them over; this object no longer discards them."""
        taken = self.tmp_dir, self.lock_fd
        self.tmp_dir = self.lock_fd = None
        return taken

    def close(self) -> None:
        self.stop()
        with critical():
            discard(self.tmp_dir, self.lock_fd)
            self.tmp_dir = self.lock_fd = None


def _nbytes(dtype: str, shape) -> int:
    n = DTYPES[dtype][1]
    for s in shape:
        n *= s
    return n


def _result_shapes(entries, plan) -> Optional[Dict[str, Tuple[int, ...]]]:
    """key -> shape of each tensor of the result, or None when a new shape is not known from the plan."""
    shapes = {}
    for key, e in entries.items():
        change = plan.changes.get(key)
        if change is None:
            shapes[key] = e.shape
        elif change.finding.action != "drop":
            shape = new_shape(change.finding, change.new, e.shape)
            if shape is None:
                return None
            shapes[key] = shape
    return shapes


def begin(path: str, output: str, target: dict, options: dict) -> Optional[HeadStart]:
    """Plan ``path`` from its header and start copying it into a temp file for ``output``; None where there
    is nothing to start: not a local safetensors file resized into a local target, a dry run, a header
    that does not parse or plan, nothing to change, or a change whose shape only running it tells."""
    from .resize import plan_resize

    if options["dry_run"] or file_format(path) != "safetensors" or is_url(path) or is_url(output) \
            or not hasattr(os, "copy_file_range") \
            or (os.path.abspath(output) == os.path.abspath(path) and not options["in_place"]):
        return None
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            return None
        with open(path, "rb") as f:
            entries, metadata, _ = read_header(f, st.st_size)
    except (OSError, FormatError):
        return None
    state = {key: StoredShape(e.dtype, e.shape) for key, e in entries.items() if e.dtype in DTYPES}
    try:
        plan = plan_resize(state, **target, mode=options["mode"], antialias=options["antialias"],
                           old_size=options["old_size"], num_prefix_tokens=options["num_prefix_tokens"],
                           sincos=options["sincos"])
    except Exception:  # whatever the plan refuses, the full plan refuses again and reports
        return None
    shapes = _result_shapes(entries, plan) if plan.changes else None
    if shapes is None:
        return None
    items = ordered([(key, entries[key].dtype, shape,
                      entries[key].end - entries[key].start if key not in plan.changes
                      else _nbytes(entries[key].dtype, shape), key) for key, shape in shapes.items()])
    header = header_bytes(items, metadata)
    copies, pos = [], len(header)
    for key, _, _, nbytes, _ in items:
        if key not in plan.changes:
            copies.append((pos, entries[key].start, entries[key].end))
        pos += nbytes
    folder = os.path.dirname(os.path.abspath(output))
    tmp_dir = lock_fd = None
    with critical():  # the caller holds off stop signals too, until it has the result to close
        try:
            tmp_dir = make_temp_folder(folder)
            lock_fd = lock_folder(tmp_dir)
            head = HeadStart(path, output, header, copies, tmp_dir, lock_fd)
            os.close(os.open(head.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            head.start()
        except OSError:
            discard(tmp_dir, lock_fd)
            return None
    return head
