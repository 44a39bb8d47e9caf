"""Timing, tables, legends and JSON shared by the benchmark jobs (plots: plots.py; README tables: readme.py).

A job module exposes: ``WHAT`` (one line: what it times), ``plan(devices, quick) -> (rows, seconds or None)``
(the row count it will produce and a lower bound of its run time, when one is cheap to know), ``run(devices,
quick) -> rows``, ``COLUMNS`` (key, header, format) shared by its stdout and README tables, ``LEGEND`` ((row
key(s) or None, text): what each column and baseline is, printed under the table and in the README) and
``plot(rows, path, title)`` (or ``plot = None``); for the README, optionally ``summary(rows) -> sentences``
(its claims, computed from the rows) and ``readme_table(rows)`` (a shorter table than the rows)."""
import datetime
import importlib.util
import json
import os
import platform

import torch
import torch.utils.benchmark as tbench

from .._backend import info


def blocked_seconds(fn, min_run_time: float) -> float:
    """Median of torch.utils.benchmark blocked runs (synchronises CUDA itself), on the threads torch has now:
    the Timer's own default is one thread, which would time every CPU kernel on one core while the results
    report ``torch.get_num_threads()``."""
    timer = tbench.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median


def median_seconds(fn, min_run_time: float) -> float:
    """``blocked_seconds`` after 3 warm-up calls."""
    for _ in range(3):  # warm-up: caches, lazy init, allocator growth, first-touch of pages
        fn()
    return blocked_seconds(fn, min_run_time)


def timed_ms(fn, args, grad_outputs=None, *, wrt=(), min_time: float) -> float:
    """Median ms of ``fn(*args)`` (no autograd), or with ``grad_outputs`` of forward + backward: the args at
    indices ``wrt`` become fresh leaves, and gradients are taken w.r.t. every tensor arg that requires
    grad."""
    if grad_outputs is None:
        with torch.no_grad():
            return 1e3 * median_seconds(lambda: fn(*args), min_time)
    args = [a.detach().requires_grad_() if i in wrt and a is not None else a for i, a in enumerate(args)]
    leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    return 1e3 * median_seconds(lambda: torch.autograd.grad(fn(*args), leaves, grad_outputs), min_time)


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "python": platform.python_version(), **info(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def cell(row, key, fmt) -> str:
    return "" if row.get(key) is None else fmt.format(row[key])


def shown_columns(rows, columns, drop_constant=()):
    """The columns with a value in some row (a baseline that is not installed leaves its column empty), less
    those named in ``drop_constant`` that hold one value in every row (the README names that value once)."""
    shown = []
    for key, header, fmt in columns:
        values = {str(row.get(key)) for row in rows if row.get(key) is not None}
        if values and not (key in drop_constant and len(values) == 1 and all(key in row for row in rows)):
            shown.append((key, header, fmt))
    return shown


def format_table(rows, columns) -> str:
    """Fixed-width text table; columns = [(key, header, format)]."""
    columns = shown_columns(rows, columns)
    cells = [[header for _, header, _ in columns]] + [[cell(row, key, fmt) for key, _, fmt in columns]
                                                       for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def legend_lines(legend, rows):
    """The legend entries that describe something the rows hold: entries are (row key, tuple of row keys
    (any of them) or None (always), text)."""
    def held(keys):
        keys = (keys,) if isinstance(keys, str) else keys
        return keys is None or any(row.get(key) is not None for row in rows for key in keys)

    return [text for keys, text in legend if held(keys)]


def span(values, fmt: str) -> str:
    """'lo-hi' of the values in ``fmt`` (one value when both ends print alike)."""
    lo, hi = fmt.format(min(values)), fmt.format(max(values))
    return lo if lo == hi else f"{lo}-{hi}"


# Shared legend lines: what the ratio columns and the ms figures of the torch.utils.benchmark jobs are.
SPEEDUP_MS = "vs X = X ms / posext ms: higher is faster for posext, 1.0x = the same time"
MEDIAN_MS = "ms = median of torch.utils.benchmark blocked runs (3 warm-up calls first)"


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (for plans made before a job runs)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules (blocked)
        return False


def timing_floor_s(measurements: int, min_time: float) -> float:
    """A lower bound of a job's run time: blocked_autorange runs each measurement for at least
    ``min_time``."""
    return measurements * min_time


def write_json(path: str, job: str, rows) -> None:
    with open(path, "w") as f:
        json.dump({"job": job, "machine": machine(), "rows": rows}, f, indent=1)


def devices(requested: str):
    if requested == "all":
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if requested == "cuda" and not torch.cuda.is_available():
        raise SystemExit("posext bench: --device cuda but no CUDA device is available")
    return [requested]
