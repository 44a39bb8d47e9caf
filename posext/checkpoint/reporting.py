"""What `posext inspect` and `posext resize` say: one-line reasons and the --json report."""
import json
import os
import sys

from .files import CheckpointError, atomic_write
from .grid import GridArgumentError
from .storage import is_url


def empty_report(path, output, status="ok", reason=""):
    """The report of one file before (or without) any work on it."""
    return {"input": path, "output": output, "status": status, "reason": reason, "findings": [],
            "removed": [], "bytes": 0, "seconds": 0.0}


def one_line(text) -> str:
    return " ".join(str(text).split())


def failure_reason(exc: Exception) -> str:
    if isinstance(exc, GridArgumentError):
        return one_line(exc.render("cli"))  # name the flags that settle it, not the library's keywords
    if isinstance(exc, CheckpointError):
        return one_line(exc)
    return one_line(f"{type(exc).__name__}: {exc}")


def check_report_path(command, path, flag="--json"):
    """Refuse an unusable --json (or --manifest) before any work, so it cannot fail after a long run."""
    if is_url(path):
        raise SystemExit(f"posext {command}: {flag} {path}: give a local file (it is appended to as files "
                         f"finish, which object stores cannot do)")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise SystemExit(f"posext {command}: {flag} {path} is a folder; give the report's file name")
    if not os.path.isdir(folder):
        raise SystemExit(f"posext {command}: {flag} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SystemExit(f"posext {command}: {flag} {path}: the folder {folder} is not writable")


def write_report(command, path, obj) -> bool:
    try:
        atomic_write(path, lambda tmp: dump_json(tmp, obj))
        return True
    except (CheckpointError, OSError) as exc:
        print(f"posext {command}: cannot write the --json report {path}: {failure_reason(exc)}",
              file=sys.stderr)
        return False


def dump_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, default=str)
