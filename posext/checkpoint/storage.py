"""Where checkpoints live: local paths, or fsspec URLs (``s3://``, ``gs://``, ``hf://``, ``memory://``, ...).

A path that starts with a scheme (``proto://``) goes through fsspec and the filesystem that scheme's package
registers (s3fs, gcsfs, huggingface_hub, ...); ``file://`` URLs are taken as the local paths they name.
Reads stream through fsspec file objects (ranged reads: a safetensors file is read as its header plus the
tensors that change, see ``safetensors_io``); formats that need a local file (torch pickles, .npz) are
downloaded into a local temp folder first and removed after. Writes go to a temp object
``.posext-tmp-<pid>-<random>/<name>`` beside the target and are moved onto the target once complete: on
object stores a move is a server-side copy of a finished object, so the target appears whole or not at
all. A run killed outright can leave such a temp object; nothing ever reads one as a checkpoint.
"""
import contextlib
import os
import posixpath
import re
import shutil
import tempfile
import uuid
from typing import Callable, List, Optional, Tuple

from .signals import critical
from .tempfiles import TEMP_PREFIX

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+(::[A-Za-z][A-Za-z0-9+.\-]+)*://")


class StorageError(Exception):
    """A URL that cannot be used: no fsspec, an unknown scheme, an unreachable store."""


def is_url(path: str) -> bool:
    """Whether ``path`` is an fsspec URL (any scheme but ``file://``, which :func:`local_path` resolves)."""
    return bool(_SCHEME.match(path)) and not path.startswith("file://")


def local_path(path: str) -> str:
    """``file:///a/b`` -> ``/a/b``; every other path as given."""
    return path[len("file://"):] if path.startswith("file://") else path


def filesystem(url: str):
    """(fsspec filesystem, path inside it) of ``url``; StorageError naming what is missing."""
    try:
        from fsspec.core import url_to_fs
    except ImportError:
        raise StorageError("URLs need fsspec: pip install 'posext[cluster]'") from None
    try:
        return url_to_fs(url)
    except (ImportError, ValueError) as exc:  # a scheme whose package is not installed, or unknown
        raise StorageError(f"cannot open {url.split('://')[0]}:// URLs: {exc}") from None


def url_of(fs, path: str) -> str:
    """The URL of ``path`` inside ``fs``; a local path when ``fs`` is the local file system (``local://``)."""
    return local_path(fs.unstrip_protocol(path))


def split(path: str) -> Tuple[str, str]:
    """(parent, name) of a local path or URL."""
    if not is_url(path):
        return os.path.split(path)
    scheme, _, rest = path.partition("://")
    parent, name = posixpath.split(rest.rstrip("/"))
    return f"{scheme}://{parent}", name


def join(folder: str, name: str) -> str:
    return folder.rstrip("/") + "/" + name if is_url(folder) else os.path.join(folder, name)


def size(path: str) -> int:
    if not is_url(path):
        return os.path.getsize(path)
    fs, inner = filesystem(path)
    return int(fs.size(inner))


def opener(path: str) -> Callable:
    """A function opening ``path`` for binary reads (a local file, or an fsspec file with ranged reads)."""
    if not is_url(path):
        return lambda: open(path, "rb")
    fs, inner = filesystem(path)
    return lambda: fs.open(inner, "rb")


def stat_token(path: str) -> Optional[List]:
    """What identifies the current contents of ``path``: [size, mtime_ns] locally, [size, ETag or
    modification time] in a store; None when it does not exist."""
    if not is_url(path):
        try:
            st = os.stat(path)
        except OSError:
            return None
        return [st.st_size, st.st_mtime_ns]
    fs, inner = filesystem(path)
    try:
        info = fs.info(inner)
    except (FileNotFoundError, OSError):
        return None
    return [int(info.get("size") or 0), info_stamp(info)]


def info_stamp(info: dict) -> str:
    """What changes with an object's contents in its fsspec ``info``: the ETag or a modification time."""
    return str(next((info[k] for k in ("ETag", "etag", "md5Hash", "mtime", "LastModified", "last_modified",
                                       "created") if info.get(k) is not None), None))


def make_folder(url: str) -> None:
    fs, inner = filesystem(url)
    fs.makedirs(inner, exist_ok=True)


def is_folder(url: str) -> bool:
    fs, inner = filesystem(url)
    return fs.isdir(inner)


def exists(url: str) -> bool:
    fs, inner = filesystem(url)
    return fs.exists(inner)


@contextlib.contextmanager
def local_copy(url: str):
    """The object at ``url`` downloaded into a local temp folder (removed on exit): its local path."""
    fs, inner = filesystem(url)
    folder = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-")
    try:
        local = os.path.join(folder, posixpath.basename(inner))
        fs.get_file(inner, local)
        yield local
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_url(url: str, write: Callable, *, to_path: bool) -> int:
    """Write the object at ``url`` atomically; returns its size. ``write`` gets a local file path to create
    (``to_path``: uploaded when complete) or a binary file object streaming into the store. Either way the
    bytes land in a temp object beside ``url`` and are moved onto it only once complete."""
    fs, inner = filesystem(url)
    parent, name = posixpath.split(inner)
    tmp_dir = posixpath.join(parent, f"{TEMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:10]}")
    tmp = posixpath.join(tmp_dir, name)
    local_dir = None
    try:
        fs.makedirs(tmp_dir, exist_ok=True)
        if to_path:
            local_dir = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-")
            local = os.path.join(local_dir, name)
            write(local)
            fs.put_file(local, tmp)
        else:
            with fs.open(tmp, "wb") as f:
                write(f)
        nbytes = int(fs.size(tmp))
        with critical():
            fs.mv(tmp, inner)
    finally:
        with critical():
            with contextlib.suppress(OSError):
                fs.rm(tmp_dir, recursive=True)
            if local_dir is not None:
                shutil.rmtree(local_dir, ignore_errors=True)
    return nbytes
