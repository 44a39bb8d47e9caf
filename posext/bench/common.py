"""Timing, tables, JSON and plots shared by the benchmark jobs."""
import datetime
import json
import os
import platform

import torch
import torch.utils.benchmark as tbench

from .._backend import info


def median_seconds(fn, min_run_time: float) -> float:
    """Median of torch.utils.benchmark blocked runs (synchronises CUDA itself)."""
    for _ in range(3):  # warm-up: caches, lazy init, allocator growth, first-touch of pages
        fn()
    return tbench.Timer(stmt="fn()", globals={"fn": fn}).blocked_autorange(min_run_time=min_run_time).median


def timed_ms(fn, args, grad_outputs=None, *, wrt=(), min_time: float) -> float:
    """Median ms of ``fn(*args)`` (no autograd), or with ``grad_outputs`` of forward + backward: the args at
    indices ``wrt`` become fresh leaves, and gradients are taken w.r.t. every tensor arg that requires grad."""
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


def format_table(rows, columns) -> str:
    """Fixed-width text table; columns = [(key, header, format)]."""
    cells = [[header for _, header, _ in columns]]
    for row in rows:
        cells.append([("" if row.get(key) is None else fmt.format(row[key])) for key, _, fmt in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(path: str, job: str, rows) -> None:
    with open(path, "w") as f:
        json.dump({"job": job, "machine": machine(), "rows": rows}, f, indent=1)


def plot_speedups(path: str, title: str, rows, x_key: str, x_label: str, series_key: str, speedup_keys,
                  connect: bool = True, log_x: bool = False) -> None:
    """One line (or marker set) per (series, baseline): speedup of posext over that baseline against x."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for series in sorted({r[series_key] for r in rows}, key=str):
        sub = sorted((r for r in rows if r[series_key] == series), key=lambda r: r[x_key])
        for key, label in speedup_keys:
            pts = [(r[x_key], r[key]) for r in sub if r.get(key)]
            if pts:
                ax.plot(*zip(*pts), marker="o", linestyle="-" if connect else "none", label=f"{series}: {label}")
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_yscale("log")
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel("speedup of posext (x, log)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def devices(requested: str):
    if requested == "all":
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if requested == "cuda" and not torch.cuda.is_available():
        raise SystemExit("posext bench: --device cuda but no CUDA device is available")
    return [requested]
