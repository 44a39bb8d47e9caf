"""`posext inspect` and `posext resize`: many checkpoint files at once, each failure reported, none fatal."""
import argparse
import glob
import json
import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from multiprocessing import get_context

import torch

from .io import (CHECKPOINT_SUFFIXES, CheckpointError, atomic_write, drop_grid_dependent_optimizer_state,
                 load_checkpoint, replace_state_dicts, save_checkpoint)


def size_pair(text: str):
    """'24' -> (24, 24); '24x32' -> (24, 32)."""
    parts = text.lower().split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or HxW, got {text!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected N or HxW with positive sizes, got {text!r}")
    return values


def add_parsers(sub) -> None:
    inspect = sub.add_parser("inspect", help="list the position embeddings found in checkpoint files")
    inspect.add_argument("inputs", nargs="+", help="files, folders (searched recursively) or glob patterns")
    inspect.add_argument("--old-size", type=size_pair, help="stored grid HxW when it is not square")
    inspect.add_argument("--prefix-tokens", type=int, help="prefix rows stored in the table (class, dist, ...)")
    inspect.add_argument("--unsafe-pickle", action="store_true", help="allow arbitrary pickles (trusted files!)")
    inspect.add_argument("--json", metavar="REPORT", help="also write the findings as JSON")
    inspect.set_defaults(func=run_inspect)

    resize = sub.add_parser("resize", help="resize the position embeddings of checkpoint files to a new grid")
    resize.add_argument("inputs", nargs="+", help="files, folders (searched recursively) or glob patterns")
    target = resize.add_mutually_exclusive_group(required=True)
    target.add_argument("--grid", type=size_pair, help="new patch grid, N or HxW")
    target.add_argument("--image-size", type=size_pair, help="new image size S or HxW (with --patch-size)")
    resize.add_argument("--patch-size", type=size_pair, help="patch size P or HxW (with --image-size)")
    resize.add_argument("--mode", default="bicubic", choices=["bicubic", "bilinear", "nearest"])
    resize.add_argument("--antialias", action=argparse.BooleanOptionalAction, default=True,
                        help="antialiased resampling, as timm (default: on)")
    resize.add_argument("--old-size", type=size_pair, help="stored grid HxW when it is not square")
    resize.add_argument("--prefix-tokens", type=int, help="prefix rows stored in the table (class, dist, ...)")
    resize.add_argument("--sincos", choices=["auto", "interpolate"], default="auto",
                        help="auto: regenerate fixed sin-cos tables (MAE) exactly; interpolate: resample them")
    where = resize.add_mutually_exclusive_group()
    where.add_argument("--out", metavar="DIR", help="write results into DIR (default: next to each input)")
    where.add_argument("--in-place", action="store_true", help="replace each input (atomically)")
    resize.add_argument("--suffix", help="file-name suffix when writing next to the input (default _HxW)")
    resize.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    resize.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to resample")
    resize.add_argument("--drop-optimizer", action="store_true",
                        help="remove the whole optimizer state (default: only grid-shaped moments, with a warning)")
    resize.add_argument("--unsafe-pickle", action="store_true", help="allow arbitrary pickles (trusted files!)")
    resize.add_argument("--dry-run", action="store_true", help="report what would change, write nothing")
    resize.add_argument("--json", metavar="REPORT", help="write a JSON report")
    resize.set_defaults(func=run_resize)


def collect_inputs(items):
    """-> (sorted unique files, [(item, reason)] for items that matched nothing)."""
    files, missing = [], []

    def add_dir(folder):
        for root, _, names in os.walk(folder):
            files.extend(os.path.join(root, n) for n in names if n.lower().endswith(CHECKPOINT_SUFFIXES)
                         and not n.startswith("."))

    for item in items:
        if os.path.isdir(item):
            add_dir(item)
        elif os.path.isfile(item):
            files.append(item)
        else:
            matches = glob.glob(item, recursive=True)
            if not matches:
                missing.append((item, "no such file, folder or glob match"))
            for m in matches:
                add_dir(m) if os.path.isdir(m) else files.append(m)
    return sorted(set(os.path.normpath(f) for f in files)), missing


def output_path(path, grid, out_dir=None, in_place=False, suffix=None):
    if in_place:
        return path
    if out_dir:
        return os.path.join(out_dir, os.path.basename(path))
    stem, ext = os.path.splitext(path)
    return f"{stem}{suffix if suffix is not None else f'_{grid[0]}x{grid[1]}'}{ext}"


def _findings_rows(ckpt, options):
    from . import find_position_embeddings

    rows = []
    for wrapper, state in ckpt.state_dicts.items():
        for f in find_position_embeddings(state, old_size=options.get("old_size"),
                                          num_prefix_tokens=options.get("num_prefix_tokens")):
            rows.append({"wrapper": wrapper, "shape": list(state[f.key].shape), **asdict(f)})
    return rows


def resize_file(path, output, grid, options):
    """Resize one file; never raises for a bad file: returns its report (status ok / skipped / failed)."""
    from . import find_position_embeddings, resize_state_dict

    start = time.perf_counter()
    report = {"input": path, "output": output, "status": "ok", "reason": "", "findings": [], "removed": [],
              "bytes": 0}
    try:
        if not options["in_place"] and os.path.abspath(output) == os.path.abspath(path):
            raise CheckpointError("the output would overwrite the input; pass --in-place to allow that")
        ckpt = load_checkpoint(path, unsafe_pickle=options["unsafe_pickle"])
        device = torch.device(options["device"])
        new_states, old_shapes = {}, set()
        for wrapper, state in ckpt.state_dicts.items():
            keys = {f.key for f in find_position_embeddings(state, old_size=options["old_size"],
                                                            num_prefix_tokens=options["num_prefix_tokens"])}
            staged = {k: (v.to(device) if k in keys else v) for k, v in state.items()}
            resized, applied = resize_state_dict(staged, grid, mode=options["mode"], antialias=options["antialias"],
                                                 old_size=options["old_size"],
                                                 num_prefix_tokens=options["num_prefix_tokens"],
                                                 sincos=options["sincos"])
            new_states[wrapper] = {k: (v.cpu() if k in keys and isinstance(v, torch.Tensor) else v)
                                   for k, v in resized.items()}
            for f in applied:
                old_shapes.add(tuple(state[f.key].shape))
                report["findings"].append({"wrapper": wrapper, "old_shape": list(state[f.key].shape),
                                           "new_shape": list(resized[f.key].shape) if f.key in resized else None,
                                           **asdict(f)})
        if not report["findings"]:
            report.update(status="skipped", reason="no position embedding found")
            return report
        new = replace_state_dicts(ckpt, new_states)
        report["removed"] = drop_grid_dependent_optimizer_state(new.container, old_shapes,
                                                                drop_all=options["drop_optimizer"])
        if report["removed"] and not options["drop_optimizer"]:  # asked-for removal needs no warning
            warnings.warn(f"{path}: dropped grid-shaped optimizer state {report['removed']}", RuntimeWarning)
        if options["dry_run"]:
            report["status"] = "dry-run"
        else:
            report["bytes"] = save_checkpoint(new, output)
    except Exception as exc:  # one bad file never stops the batch
        report.update(status="failed", reason=f"{type(exc).__name__}: {exc}" if not isinstance(
            exc, CheckpointError) else str(exc))
    finally:
        report["seconds"] = round(time.perf_counter() - start, 4)
    return report


def _target_grid(args):
    if args.grid:
        return args.grid
    if not args.patch_size:
        raise SystemExit("posext resize: --image-size needs --patch-size")
    grid = tuple(s // p for s, p in zip(args.image_size, args.patch_size))
    if min(grid) < 1:
        raise SystemExit(f"posext resize: image size {args.image_size} is smaller than the patch {args.patch_size}")
    return grid


def _progress(total_files, total_bytes):
    """A rich progress bar on a TTY; None in pipes."""
    if not sys.stderr.isatty():
        return None
    try:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn
    except ImportError:
        return None
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), DownloadColumn(),
                        console=Console(stderr=True))
    progress.start()
    progress.add_task("resizing", total=total_files)
    progress.add_task("bytes", total=total_bytes)
    return progress


def run_resize(args) -> int:
    grid = _target_grid(args)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("posext resize: --device cuda but no CUDA device is available")
    if args.workers < 1:
        raise SystemExit(f"posext resize: --workers must be >= 1, got {args.workers}")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
    files, missing = collect_inputs(args.inputs)
    options = dict(mode=args.mode, antialias=args.antialias, old_size=args.old_size,
                   num_prefix_tokens=args.prefix_tokens, sincos=args.sincos, device=args.device,
                   unsafe_pickle=args.unsafe_pickle, dry_run=args.dry_run, drop_optimizer=args.drop_optimizer,
                   in_place=args.in_place)
    jobs = [(f, output_path(f, grid, args.out, args.in_place, args.suffix)) for f in files]
    reports = {f: None for f in files}
    sizes = {f: os.path.getsize(f) for f in files}
    progress = _progress(len(files), sum(sizes.values()))
    try:
        if args.workers > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(max_workers=args.workers, mp_context=get_context("spawn")) as pool:
                futures = {pool.submit(resize_file, f, out, grid, options): f for f, out in jobs}
                try:
                    for fut in as_completed(futures):
                        reports[futures[fut]] = fut.result()
                        _advance(progress, sizes[futures[fut]])
                except KeyboardInterrupt:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
        else:
            for f, out in jobs:
                reports[f] = resize_file(f, out, grid, options)
                _advance(progress, sizes[f])
    except KeyboardInterrupt:
        if progress:
            progress.stop()
        print("posext resize: interrupted; files already written are complete, no partial file was left",
              file=sys.stderr)
        return 130
    if progress:
        progress.stop()
    ordered = [reports[f] for f in files] + [
        {"input": item, "output": None, "status": "failed", "reason": reason, "findings": [], "removed": [],
         "bytes": 0, "seconds": 0.0} for item, reason in missing]
    _print_summary(ordered, grid, args.dry_run)
    if args.json:
        atomic_write(args.json, lambda tmp: _dump_json(tmp, {"grid": list(grid), "files": ordered}))
    return 1 if any(r["status"] == "failed" for r in ordered) else 0


def _advance(progress, nbytes):
    if progress:
        progress.advance(0)
        progress.advance(1, nbytes)


def _dump_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, default=str)


def _print_summary(reports, grid, dry_run):
    print(f"posext resize -> grid {grid[0]}x{grid[1]}{' (dry run: nothing written)' if dry_run else ''}")
    for r in reports:
        what = ", ".join(f"{f['key']} {f['action']} {f.get('old_shape')}->{f.get('new_shape')}"
                         for f in r["findings"]) or r["reason"]
        dest = f" -> {r['output']}" if r["status"] == "ok" else ""
        print(f"  [{r['status']}] {r['input']}{dest}: {what}")
    counts = {s: sum(r["status"] == s for r in reports) for s in ("ok", "dry-run", "skipped", "failed")}
    print("summary: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    failures = [r for r in reports if r["status"] == "failed"]
    if failures:
        print("failures:")
        for r in failures:
            print(f"  {r['input']}: {r['reason']}")


def run_inspect(args) -> int:
    files, missing = collect_inputs(args.inputs)
    options = dict(old_size=args.old_size, num_prefix_tokens=args.prefix_tokens)
    report, failed = [], False
    header = f"{'file':<40} {'wrapper':<10} {'key':<55} {'family':<14} {'layout':<16} {'grid':<7} {'P':>2} action"
    print(header)
    for path in files:
        try:
            ckpt = load_checkpoint(path, unsafe_pickle=args.unsafe_pickle)
            rows = _findings_rows(ckpt, options)
        except Exception as exc:
            failed = True
            print(f"{path:<40} ERROR {exc}")
            report.append({"input": path, "error": str(exc)})
            continue
        if not rows:
            print(f"{path:<40} (no position embedding found; format {ckpt.format})")
        for r in rows:
            grid = "x".join(map(str, r["old_grid"])) if r["old_grid"] else "-"
            print(f"{path:<40} {r['wrapper'] or '-':<10} {r['key']:<55} {r['family']:<14} {r['layout']:<16} "
                  f"{grid:<7} {r['num_prefix_tokens']:>2} {r['action']}: {r['reason']}")
        report.append({"input": path, "format": ckpt.format, "findings": rows})
    for item, reason in missing:
        failed = True
        print(f"{item:<40} ERROR {reason}")
    if args.json:
        atomic_write(args.json, lambda tmp: _dump_json(tmp, report))
    return 1 if failed else 0
