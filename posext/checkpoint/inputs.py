"""The files a command works on and where `posext resize` writes each result.

Arguments are files, folders (searched recursively) or glob patterns. A Hugging Face ``save_pretrained``
folder (``config.json`` plus weights), named or found while searching, is one input: its shards are
resized together. Only regular files are read: a FIFO,
socket or device would block or never end, a dangling symlink or a symlink loop has nothing to read; each is
reported on its own line and the rest of the batch goes on. Temp folders of atomic writes are never searched.

An fsspec URL (``s3://bucket/zoo/``, ``memory://ckpts/*.safetensors``; see ``storage``) names an object, a
prefix searched recursively, or a glob over the store; a Hugging Face folder in a store is one input, as on
a local disk (``stored_folders``).

Two paths are the same directory entry when their folders resolve (realpath) to the same folder and their
names are equal: ``os.replace`` onto a path replaces that entry (a symlink there, not the file it points
to). Targets are compared with inputs that way, so an ``--out`` that is a symlink to an input's folder is
caught, and a result is never written over an input.
"""
import errno
import glob
import os
import stat
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set, Tuple

from . import storage
from .files import CHECKPOINT_SUFFIXES, file_kind
from .hf_layout import is_hf_folder
from .stored_folders import hf_folders_in, owner
from .tempfiles import TEMP_PREFIX, is_temp_path


@dataclass
class Inputs:
    files: List[str] = field(default_factory=list)                   # sorted, one spelling per entry
    sizes: Dict[str, int] = field(default_factory=dict)              # file -> bytes
    problems: List[Tuple[str, str]] = field(default_factory=list)    # (argument or path, one-line reason)
    folders: Set[str] = field(default_factory=set)                   # folders searched
    hf_folders: Set[str] = field(default_factory=set)                # inputs that are HF folders


def entry_id(path: str) -> Tuple[str, str]:
    """The directory entry ``path`` names: (its folder, resolved; its name). A URL's folder is its prefix."""
    if storage.is_url(path):
        scheme, _, rest = path.partition("://")
        return storage.split(f"{scheme}://{os.path.normpath('/' + rest).lstrip('/')}")
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.realpath(folder), name


def _is_candidate(name: str) -> bool:
    return name.lower().endswith(CHECKPOINT_SUFFIXES) and not name.startswith(".")


def _collect_url(item: str, found: "Inputs", add_file, add_hf_folder) -> None:
    """The objects ``item`` names in its store, each added with ``add_file(url, size)`` (a Hugging Face
    folder with ``add_hf_folder(url, size)``); problems into ``found``."""
    try:
        fs, inner = storage.filesystem(item)
        matches = sorted(fs.glob(inner)) if glob.has_magic(inner) else [inner]
        if not matches:
            found.problems.append((item, "no such object, prefix or glob match"))
        for match in matches:
            try:
                info = fs.info(match)
            except FileNotFoundError:
                found.problems.append((item, "no such object or prefix"))
                continue
            if info.get("type") != "directory":
                add_file(storage.url_of(fs, match), int(info.get("size") or 0))
                continue
            listing = {path: detail for path, detail in fs.find(match, detail=True).items()
                       if not any(p.startswith(TEMP_PREFIX) for p in path.split("/"))}
            folders = hf_folders_in(fs, listing)
            folder_bytes, loose, taken = dict.fromkeys(folders, 0), [], set(folders)
            for path, detail in listing.items():
                folder = owner(path, taken)
                if folder is not None:  # a folder's files are that one input
                    folder_bytes[folder] += int(detail.get("size") or 0)
                elif _is_candidate(path.split("/")[-1]):
                    loose.append(path)
            for folder in folders:
                add_hf_folder(storage.url_of(fs, folder), folder_bytes[folder])
            for path in sorted(loose):
                add_file(storage.url_of(fs, path), int(listing[path].get("size") or 0))
    except (storage.StorageError, OSError) as exc:
        found.problems.append((item, f"cannot list: {exc}"))


def _unreadable(path: str, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink loop: the link resolves to itself, there is no file to read"
    if os.path.islink(path) and exc.errno == errno.ENOENT:
        return f"dangling symlink: its target {os.readlink(path)!r} does not exist"
    return f"cannot read: {exc.strerror or exc}"


def collect_inputs(items) -> Inputs:
    found = Inputs()
    seen: Dict[Tuple[str, str], str] = {}

    def add_file(path, nbytes):
        path = path if storage.is_url(path) else os.path.normpath(path)
        if entry_id(path) not in seen:
            seen[entry_id(path)] = path
            found.sizes[path] = nbytes

    def add(path, named):
        """``named``: given as an argument (a folder is then searched); else found while searching."""
        if is_temp_path(path):
            found.problems.append((path, "inside a temp folder of an interrupted posext write: not read"))
            return
        try:
            st = os.stat(path)
        except OSError as exc:
            found.problems.append((os.path.normpath(path), _unreadable(path, exc)))
            return
        if stat.S_ISDIR(st.st_mode) and is_hf_folder(path):
            add_hf_folder(path)
        elif stat.S_ISDIR(st.st_mode) and named:
            add_folder(path)
        elif stat.S_ISREG(st.st_mode):
            add_file(path, st.st_size)
        elif not stat.S_ISDIR(st.st_mode):
            found.problems.append((os.path.normpath(path),
                                   f"{file_kind(st.st_mode)}, not a regular file: not read"))

    def add_hf_folder(path, nbytes=None):
        path = path if storage.is_url(path) else os.path.normpath(path)
        if entry_id(path) not in seen:
            seen[entry_id(path)] = path
            found.hf_folders.add(path)
            found.sizes[path] = nbytes if nbytes is not None else sum(
                os.path.getsize(os.path.join(root, n)) for root, _, names in os.walk(path) for n in names)

    def add_folder(folder):
        def unlistable(exc):
            found.problems.append((exc.filename or folder, f"cannot list the folder: {exc.strerror or exc}"))

        for root, dirs, names in os.walk(folder, onerror=unlistable):
            found.folders.add(os.path.normpath(root))
            dirs[:] = sorted(d for d in dirs if not d.startswith(TEMP_PREFIX))
            for d in [d for d in dirs if is_hf_folder(os.path.join(root, d))]:
                dirs.remove(d)  # one input: its shards are not searched on their own
                add_hf_folder(os.path.join(root, d))
            for name in sorted(names):
                if _is_candidate(name):
                    add(os.path.join(root, name), named=False)

    for item in items:
        if storage.is_url(item):
            _collect_url(item, found, add_file, add_hf_folder)
            continue
        if os.path.lexists(item):
            add(item, named=True)
            continue
        matches = sorted(glob.glob(item, recursive=True))
        if not matches:
            found.problems.append((item, "no such file, folder or glob match"))
        for match in matches:
            add(match, named=True)
    found.files = sorted(seen.values())
    return found


def output_path(path, label, out_dir=None, in_place=False, suffix=None, folder=False) -> str:
    """Where the resized ``path`` goes: in place, into ``out_dir``, or next to it as ``<stem>_<label>``
    (``label``: the target, e.g. ``24x32`` or ``384x512_p8``; ``folder``: ``path`` is a folder, whose name
    keeps any dots)."""
    if in_place:
        return path
    if out_dir:
        return storage.join(out_dir, storage.split(path)[1])
    stem, ext = (path.rstrip("/" if storage.is_url(path) else os.sep), "") if folder \
        else os.path.splitext(path)
    return f"{stem}{suffix if suffix is not None else '_' + label}{ext}"


def target_conflicts(jobs: List[Tuple[str, str]], in_place: bool, out_dir: Optional[str],
                     report: Optional[str] = None, manifest: Optional[str] = None) -> List[str]:
    """One line for each target two inputs share, each target that is an input (its own only with
    ``in_place``), and a report or manifest path that is an input or a target. Empty when the batch is safe
    to run."""
    inputs = {entry_id(src): src for src, _ in jobs}
    writers: Dict[Tuple[str, str], List[str]] = {}
    problems = []
    for src, target in jobs:
        writers.setdefault(entry_id(target), []).append(src)
        owner = inputs.get(entry_id(target))
        if owner is None or (owner == src and in_place):
            continue
        if owner != src:
            problems.append(f"the result of {src} would overwrite {owner}, another input of this batch; "
                            f"choose another --suffix or --out")
        elif out_dir is not None:
            problems.append(f"the result of {src} would overwrite that input ({target}: --out {out_dir} is "
                            f"its folder); choose another --out, or replace inputs with --in-place and "
                            f"no --out")
        else:
            problems.append(f"the result of {src} would overwrite that input; choose another --suffix, or "
                            f"pass --in-place to replace inputs")
    for target_id, sources in writers.items():
        if len(sources) > 1:
            target = storage.join(*target_id)
            others = f" (and {len(sources) - 2} more)" if len(sources) > 2 else ""
            problems.append(f"{sources[0]} and {sources[1]}{others} would {'all' if others else 'both'} be "
                            f"written to {target}; resize them to different --out folders "
                            f"or in separate runs")
    for flag, path in (("--json", report), ("--manifest", manifest)):
        if path is None:
            continue
        path_id = entry_id(path)
        if path_id in inputs:
            problems.append(f"{flag} {path} would overwrite the input {inputs[path_id]}")
        elif path_id in writers:
            problems.append(f"{flag} {path} would overwrite the result of {writers[path_id][0]}")
    if report is not None and manifest is not None and entry_id(report) == entry_id(manifest):
        problems.append(f"--json and --manifest are one file ({report}); give them different names")
    return problems
