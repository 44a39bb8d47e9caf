"""`posext resize --manifest FILE [--skip-existing]`: a run's journal, so a stopped run of many files restarts
where it stopped.

The manifest is JSON Lines: one line per finished file (ok, skipped or failed), appended and fsync'd as the
file finishes, by the parent process only. Each line is that file's report plus ``settings`` (a digest of the
resize settings) and, for a written target, what identifies its contents right after the write: size and
modification time (in a store: size and ETag or modification time; of a folder: its total size and a digest
of every file's name, size and time or ETag). A run killed mid-line leaves at most
one unterminated last line: readers ignore lines that do not parse, and the next writer starts a new line
first. With ``--skip-existing`` a job is skipped when the latest line for its input says ``ok`` for the same
target and settings and the target is unchanged since (any later change to it, or a different setting,
resizes it again).
"""
import hashlib
import json
import os
from typing import Dict, List, Optional, Tuple

from . import storage
from .stored_folders import folder_token


def settings_digest(target: dict, options: dict) -> str:
    """A digest of everything that decides a result's bytes (dry runs excluded: they write nothing)."""
    keep = {k: v for k, v in options.items() if k != "dry_run"}
    text = json.dumps({"target": target, "options": keep}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_complete(path: str) -> Dict[str, dict]:
    """input -> its latest manifest line (an absent manifest is an empty one)."""
    latest: Dict[str, dict] = {}
    try:
        with open(path, "rb") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return latest
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:  # the unterminated last line of a killed run
            continue
        if isinstance(entry, dict) and isinstance(entry.get("input"), str):
            latest[entry["input"]] = entry
    return latest


def target_token(path: str) -> Optional[List]:
    """What identifies the current contents of a target (file or folder, local or in a store); None when
    it does not exist."""
    try:
        folder = storage.is_folder(path) if storage.is_url(path) else os.path.isdir(path)
    except OSError:
        return None
    return folder_token(path) if folder else storage.stat_token(path)


def is_complete(entry: Optional[dict], output: str, settings: str) -> bool:
    if not entry or entry.get("status") != "ok" or entry.get("output") != output:
        return False
    if entry.get("settings") != settings:
        return False
    stat = target_token(output)
    return stat is not None and stat == entry.get("target_stat")


def split_done(jobs: List[Tuple[str, str]], manifest: str, settings: str):
    """(jobs still to do, jobs whose result is complete per the manifest)."""
    latest = read_complete(manifest)
    todo, done = [], []
    for src, out in jobs:
        (done if is_complete(latest.get(src), out, settings) else todo).append((src, out))
    return todo, done


class Manifest:
    """Appends one fsync'd line per finished file."""

    def __init__(self, path: str, settings: str):
        self.path, self.settings = path, settings
        self._file = open(path, "ab")
        if self._file.tell() > 0:  # a killed run's unterminated line ends here, not inside ours
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    self._file.write(b"\n")

    def add(self, report: dict) -> None:
        entry = dict(report, settings=self.settings)
        if report.get("status") == "ok" and report.get("output"):
            entry["target_stat"] = target_token(report["output"])
        self._file.write(json.dumps(entry, default=str).encode() + b"\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()
