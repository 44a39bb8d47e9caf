"""Hugging Face ``save_pretrained`` folders in a store (an fsspec URL, see ``storage``): found, fetched and
written back.

A prefix is such a folder when it holds ``config.json`` and a complete weight set, as on a local disk
(``hf_layout``). Its shards and configs are resized together through a local copy: :func:`fetch_folder`
downloads the folder into a local folder, except weights of other frameworks (TF, Flax, ONNX, GGUF), which
a result leaves out anyway; the resized folder is written locally and :func:`upload_folder` puts it in the
store.

An upload never shows a half-written object, and a folder with a ``config.json`` is always a whole one, old
or new: every file goes to a temp prefix ``.posext-tmp-<pid>-<random>/`` beside the target first. Only
then does the swap start: the old target's ``config.json`` goes first, the new objects are moved into place
(a server-side copy of a finished object), objects of the old target that the new one lacks are removed,
and the new ``config.json`` comes last. While the swap runs, the prefix is no model folder, neither to
``from_pretrained`` nor to posext. Kept free of torch: the command sorts its inputs before torch loads.
"""
import hashlib
import json
import os
import posixpath
import uuid
from typing import Dict, Iterable, List, Optional, Set

from . import storage
from .hf_layout import CONFIG_FILE, is_stale_weights, weight_sets_of
from .signals import critical
from .tempfiles import TEMP_PREFIX


def _listing(fs, inner: str) -> Dict[str, dict]:
    """Path relative to the prefix ``inner`` -> fsspec info of each object under it (temp objects of atomic
    writes left out)."""
    root = inner.rstrip("/")
    found = fs.find(root, detail=True)
    return {path[len(root) + 1:]: info for path, info in found.items()
            if path.startswith(root + "/") and not any(p.startswith(TEMP_PREFIX) for p in path.split("/"))}


def _weight_sets(fs, folder: str, has_file) -> list:
    return weight_sets_of(has_file, lambda name: json.loads(fs.cat_file(f"{folder}/{name}")))


def owner(path: str, folders: Set[str]) -> Optional[str]:
    """The folder of ``folders`` that ``path`` lies in, if any."""
    parent = posixpath.dirname(path)
    while parent and parent != path:
        if parent in folders:
            return parent
        path, parent = parent, posixpath.dirname(parent)
    return None


def hf_folders_in(fs, paths: Iterable[str]) -> List[str]:
    """The Hugging Face folders among the prefixes of the object ``paths`` (inner paths of ``fs``), outermost
    only: a folder inside another is part of it."""
    present = set(paths)
    folders: List[str] = []
    taken: Set[str] = set()
    for folder in sorted({posixpath.dirname(p) for p in present if posixpath.basename(p) == CONFIG_FILE}):
        if owner(folder, taken):
            continue
        try:
            if _weight_sets(fs, folder, lambda name: f"{folder}/{name}" in present):
                folders.append(folder)
                taken.add(folder)
        except (OSError, ValueError):  # an unreadable or corrupt index is no folder to resize
            continue
    return folders


def fetch_folder(url: str, local: str) -> None:
    """Download the folder at ``url`` into the new local folder ``local``: everything but weight files that
    belong to no weight set being resized (``hf_layout.is_stale_weights``)."""
    fs, inner = storage.filesystem(url)
    root = inner.rstrip("/")
    objects = _listing(fs, root)
    sets = _weight_sets(fs, root, lambda name: name in objects)
    weights = {name for index, shards in sets for name in [*shards, *([index] if index else [])]}
    os.makedirs(local)
    for rel in sorted(objects):
        if is_stale_weights(rel) and rel not in weights:
            continue
        target = os.path.join(local, *rel.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fs.get_file(f"{root}/{rel}", target)


def upload_folder(local: str, url: str) -> int:
    """Put the local folder ``local`` at ``url`` in its store, replacing what is there (see the module
    docstring for the order); returns the bytes uploaded."""
    fs, inner = storage.filesystem(url)
    root = inner.rstrip("/")
    parent, name = posixpath.split(root)
    tmp_root = posixpath.join(parent, f"{TEMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:10]}")
    tmp = posixpath.join(tmp_root, name)
    files = sorted(os.path.relpath(os.path.join(folder, n), local).replace(os.sep, "/")
                   for folder, _, names in os.walk(local) for n in names)
    try:
        for rel in files:
            fs.put_file(os.path.join(local, *rel.split("/")), f"{tmp}/{rel}")
        old = _listing(fs, root) if fs.isdir(root) else {}
        with critical():
            if CONFIG_FILE in old:  # from here on the prefix is no model folder ...
                fs.rm_file(f"{root}/{CONFIG_FILE}")
            for rel in files:
                if rel != CONFIG_FILE:
                    fs.mv(f"{tmp}/{rel}", f"{root}/{rel}")
            for stale in sorted(set(old) - set(files) - {CONFIG_FILE}):
                fs.rm_file(f"{root}/{stale}")
            fs.mv(f"{tmp}/{CONFIG_FILE}", f"{root}/{CONFIG_FILE}")  # ... until the new one completes it
    finally:
        with critical():
            if fs.exists(tmp_root):
                fs.rm(tmp_root, recursive=True)
    return sum(os.path.getsize(os.path.join(local, *rel.split("/"))) for rel in files)


def folder_token(path: str) -> List:
    """What identifies the contents of a folder (local or in a store): [total bytes, a digest of each file's
    name, size and modification time or ETag]."""
    entries = []
    if storage.is_url(path):
        fs, inner = storage.filesystem(path)
        for rel, info in sorted(_listing(fs, inner).items()):
            entries.append([rel, int(info.get("size") or 0), storage.info_stamp(info)])
    else:
        for folder, dirs, names in os.walk(path):
            dirs.sort()
            for n in sorted(names):
                st = os.stat(os.path.join(folder, n))
                entries.append([os.path.relpath(os.path.join(folder, n), path), st.st_size, st.st_mtime_ns])
    digest = hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:16]
    return [sum(e[1] for e in entries), digest]
