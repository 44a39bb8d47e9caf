"""`posext inspect` and `posext resize`: many checkpoint files at once, each failure reported, none fatal.

Exit codes: 0 all files fine; 1 a file failed or the command line cannot be run safely (each reason one line
on stderr); 2 a malformed command line (argparse); 130 / 143 stopped by SIGINT / SIGTERM.
"""
import argparse
import os
import sys

from . import head_start, storage
from .inputs import collect_inputs, output_path, target_conflicts
from .manifest import Manifest, settings_digest, split_done
from .reporting import check_report_path, empty_report, write_report
from .signals import Interrupted, critical, raise_if_stopping, stop_on_signals
from .storage import is_url, local_path
from .tempfiles import TEMP_PREFIX, is_temp_path, leftovers, remove_leftovers

# The largest grid accepted (H*W tokens): 4096 x 4096. One such table is already 48 GiB at C = 768 in fp32;
# the bound keeps absurd sizes (2**32 x 2**32) from reaching the resampler and its int64 index arithmetic.
MAX_GRID_TOKENS = 2 ** 24


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


def check_grid_size(grid, what: str):
    tokens = grid[0] * grid[1]
    if tokens > MAX_GRID_TOKENS:
        raise argparse.ArgumentTypeError(f"{what} {grid[0]}x{grid[1]} has H*W = {tokens} tokens, more than "
                                         f"the {MAX_GRID_TOKENS} (4096x4096) a position table can have here")
    return grid


def grid_size(text: str):
    """A patch grid: N or HxW with H*W <= MAX_GRID_TOKENS."""
    return check_grid_size(size_pair(text), "grid")


def prefix_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of prefix rows, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more prefix rows, got {value}")
    return value


def add_parsers(sub) -> None:
    inspect = sub.add_parser("inspect", help="list the position embeddings found in checkpoint files")
    inspect.add_argument("inputs", nargs="+", help="files, folders (searched recursively) or glob patterns; "
                                                   "local or fsspec URLs")
    inspect.add_argument("--old-size", type=grid_size, help="stored grid HxW when it is not square")
    inspect.add_argument("--prefix-tokens", type=prefix_count,
                         help="prefix rows stored in the table (class, ...)")
    inspect.add_argument("--unsafe-pickle", action="store_true",
                         help="allow arbitrary pickles (trusted files!)")
    inspect.add_argument("--json", metavar="REPORT", help="also write the findings as JSON")
    inspect.set_defaults(func=_run_inspect)

    resize = sub.add_parser("resize", help="resize the position embeddings of checkpoint files to a new grid")
    resize.add_argument("inputs", nargs="+", help="files, folders (searched recursively) or glob patterns; "
                                                  "local or fsspec URLs (s3://, gs://, hf://, memory://)")
    target = resize.add_mutually_exclusive_group()
    target.add_argument("--grid", type=grid_size,
                        help="new patch grid, N or HxW (H*W at most 4096*4096), for every table")
    target.add_argument("--image-size", type=size_pair,
                        help="new image size S or HxW: each tensor's grid follows from its own patch "
                             "embedding (or its family's rule)")
    resize.add_argument("--patch-size", type=size_pair,
                        help="new patch size P or HxW: patch-embedding kernels resized (FlexiViT) and the "
                             "grids follow; keeps the image size unless --image-size is given")
    resize.add_argument("--frames", type=prefix_count, help="new number of input frames (video tables)")
    resize.add_argument("--mode", default="bicubic", choices=["bicubic", "bilinear", "nearest"])
    resize.add_argument("--antialias", action=argparse.BooleanOptionalAction, default=True,
                        help="antialiased resampling, as timm (default: on)")
    resize.add_argument("--old-size", type=grid_size, help="stored grid HxW when it is not square")
    resize.add_argument("--prefix-tokens", type=prefix_count,
                        help="prefix rows stored in the table (class, ...)")
    resize.add_argument("--sincos", choices=["auto", "interpolate"], default="auto",
                        help="auto: regenerate fixed sin-cos tables (MAE) exactly; "
                             "interpolate: resample them")
    where = resize.add_mutually_exclusive_group()
    where.add_argument("--out", metavar="DIR", help="write results into DIR, a folder or an fsspec URL "
                                                    "(default: next to each input)")
    where.add_argument("--in-place", action="store_true", help="replace each input (atomically)")
    resize.add_argument("--suffix", help="file-name suffix when writing next to the input (default _HxW)")
    resize.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    resize.add_argument("--cluster", metavar="ADDRESS",
                        help="run the files as tasks on a dask.distributed cluster: a scheduler address "
                             "(tcp://host:8786) or local[:N] (a LocalCluster of N processes)")
    resize.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to resample")
    resize.add_argument("--drop-optimizer", action="store_true",
                        help="remove the whole optimizer state "
                             "(default: only grid-shaped moments, with a warning)")
    resize.add_argument("--unsafe-pickle", action="store_true",
                        help="allow arbitrary pickles (trusted files!)")
    resize.add_argument("--dry-run", action="store_true", help="report what would change, write nothing")
    resize.add_argument("--json", metavar="REPORT", help="write a JSON report")
    resize.add_argument("--manifest", metavar="FILE",
                        help="append one JSON line per finished file to FILE as it finishes (a journal to "
                             "resume from)")
    resize.add_argument("--skip-existing", action="store_true",
                        help="skip files the --manifest records as written with these settings whose "
                             "target is unchanged since")
    resize.set_defaults(func=run_resize)


def _run_inspect(args) -> int:
    from .inspection import run_inspect

    return run_inspect(args)


def _target(args):
    """(keyword arguments for plan_resize, label for output names) from the command line."""
    if not (args.grid or args.image_size or args.patch_size or args.frames):
        raise SystemExit("posext resize: pass --grid HxW, --image-size HxW, --patch-size P or --frames T")
    if args.grid and args.patch_size:
        raise SystemExit("posext resize: --patch-size needs --image-size (the image the new patches "
                         "cover), not --grid")
    if args.frames is not None and args.frames < 1:
        raise SystemExit(f"posext resize: --frames must be >= 1, got {args.frames}")
    target = dict(new_grid=args.grid, image_size=args.image_size, patch_size=args.patch_size,
                  num_frames=args.frames)
    if args.image_size:
        try:
            check_grid_size(args.image_size, "--image-size")
        except argparse.ArgumentTypeError as exc:
            raise SystemExit(f"posext resize: {exc}") from None
    size = args.grid or args.image_size
    label = "_".join(filter(None, [f"{size[0]}x{size[1]}" if size else "",
                                   f"p{args.patch_size[0]}" if args.patch_size else "",
                                   f"t{args.frames}" if args.frames else ""]))
    return target, label


def _check_out(out, dry_run):
    if is_url(out):
        try:
            if storage.exists(out) and not storage.is_folder(out):
                raise SystemExit(f"posext resize: --out {out} exists and is not a folder")
            if not dry_run:
                storage.make_folder(out)
        except (storage.StorageError, OSError) as exc:
            raise SystemExit(f"posext resize: --out {out}: {exc}") from None
        return
    if os.path.isdir(out) and not os.access(out, os.W_OK | os.X_OK):
        raise SystemExit(f"posext resize: --out {out} is not writable")
    if not dry_run:
        try:
            os.makedirs(out, exist_ok=True)
        except OSError as exc:
            raise SystemExit(f"posext resize: --out {out}: cannot create the folder: "
                             f"{exc.strerror or exc}") from None


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
    target, label = _target(args)
    if args.device == "cuda" and not _cuda_available():
        raise SystemExit("posext resize: --device cuda but no CUDA device is available")
    if args.workers < 1:
        raise SystemExit(f"posext resize: --workers must be >= 1, got {args.workers}")
    if args.json:
        check_report_path("resize", args.json)
    if args.cluster:
        from .cluster import check_address

        check_address(args.cluster)
        if args.workers > 1:
            raise SystemExit("posext resize: --cluster runs the files on the cluster's workers; drop "
                             "--workers")
    if args.skip_existing and not args.manifest:
        raise SystemExit("posext resize: --skip-existing needs --manifest FILE (the record of finished "
                         "files)")
    if args.manifest:
        check_report_path("resize", args.manifest, "--manifest")
    args.inputs = [local_path(item) for item in args.inputs]
    args.out = local_path(args.out) if args.out else args.out
    if args.out and not is_url(args.out) and os.path.lexists(args.out) and not os.path.isdir(args.out):
        raise SystemExit(f"posext resize: --out {args.out} exists and is not a folder")
    if args.out and is_temp_path(args.out):
        raise SystemExit(f"posext resize: --out {args.out} is inside a temp folder of atomic writes "
                         f"({TEMP_PREFIX}*), which later runs may delete; choose another folder")
    found = collect_inputs(args.inputs)
    jobs = [(f, output_path(f, label, args.out, args.in_place, args.suffix, folder=f in found.hf_folders))
            for f in found.files]
    conflicts = target_conflicts(jobs, args.in_place, args.out, args.json, args.manifest)
    if conflicts:
        for line in conflicts:
            print(f"posext resize: refused, nothing written: {line}", file=sys.stderr)
        return 1
    if args.out:
        _check_out(args.out, args.dry_run)
    options = dict(mode=args.mode, antialias=args.antialias, old_size=args.old_size,
                   num_prefix_tokens=args.prefix_tokens, sincos=args.sincos, device=args.device,
                   unsafe_pickle=args.unsafe_pickle, dry_run=args.dry_run, drop_optimizer=args.drop_optimizer,
                   in_place=args.in_place)
    reports = {f: None for f in found.files}
    settings = settings_digest(target, options)
    if args.skip_existing:
        jobs, done = split_done(jobs, args.manifest, settings)
        for f, out in done:
            reports[f] = empty_report(f, out, "skipped",
                                       "complete in the --manifest (same settings, target unchanged)")
    folders = sorted({os.path.dirname(os.path.abspath(t)) for _, t in jobs if not is_url(t)} | found.folders)
    progress = _progress(len(jobs), sum(found.sizes.get(f, 0) for f, _ in jobs))
    manifest = Manifest(args.manifest, settings) if args.manifest else None

    def take(report):
        reports[report["input"]] = report
        if manifest:
            manifest.add(report)
        _advance(progress, found.sizes.get(report["input"], 0))

    with stop_on_signals():
        try:
            if not args.dry_run:
                for folder in folders:  # temp folders of killed runs, never anything else
                    remove_leftovers(folder)
            if args.cluster and jobs:
                from .cluster import run_on_cluster

                run_on_cluster(jobs, args.cluster, target, options, take,
                               lambda path, out, reason: empty_report(path, out, "failed", reason))
                for folder in folders:  # what a worker that died mid-file left
                    remove_leftovers(folder)
            elif args.workers > 1 and len(jobs) > 1:
                from .workers import run_jobs

                run_jobs(jobs, args.workers, target, options, take,
                         lambda path, out, reason: empty_report(path, out, "failed", reason))
                for folder in folders:  # what a worker that died mid-file (OOM killer) left
                    remove_leftovers(folder)
            else:
                _run_in_process(jobs, target, options, take)
        except (Interrupted, KeyboardInterrupt) as exc:
            if progress:
                progress.stop()
            if manifest:
                manifest.close()
            done = sum(r is not None and r["status"] == "ok" for r in reports.values())
            return _stopped(exc, folders, done, len(jobs))
    if progress:
        progress.stop()
    if manifest:
        manifest.close()
    ordered = [reports[f] for f in found.files] + [
        empty_report(item, None, "failed", reason) for item, reason in found.problems]
    _print_summary(ordered, label, args.dry_run)
    report = {"target": {k: (list(v) if isinstance(v, tuple) else v) for k, v in target.items()},
              "grid": list(args.grid) if args.grid else None, "files": ordered}
    written = not args.json or write_report("resize", args.json, report)
    return 1 if not written or any(r["status"] == "failed" for r in ordered) else 0


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _run_in_process(jobs, target, options, take) -> None:
    """The files one after the other in this process. When torch is still to be imported, the first file's
    untouched tensors are copied meanwhile (``head_start``); with torch loaded there is nothing to overlap,
    and no process with torch's threads is forked."""
    head = None
    try:
        if jobs and "torch" not in sys.modules:
            with critical():  # a stop signal waits until ``head`` is known, so that it is closed below
                head = head_start.begin(*jobs[0], target, options)
        from .file_job import resize_file  # imports torch

        for i, (f, out) in enumerate(jobs):
            raise_if_stopping()
            take(resize_file(f, out, target, options, head=head if i == 0 else None))
    finally:
        if head is not None:
            head.close()


def _stopped(exc, folders, done, total) -> int:
    """After a stop signal: remove what killed workers left, say honestly what is left, exit 128 + signal."""
    for folder in folders:
        remove_leftovers(folder)
    left = [path for folder in folders for path in leftovers(folder)]
    what = str(exc) if isinstance(exc, Interrupted) else "interrupted"
    state = (f"these temp folders could not be removed: {', '.join(left)}" if left
             else "no partial file was left")
    print(f"posext resize: {what} after {done} of {total} files; files already written are complete, {state}",
          file=sys.stderr)
    return exc.exit_code if isinstance(exc, Interrupted) else 130


def _advance(progress, nbytes):
    if progress:
        progress.advance(0)
        progress.advance(1, nbytes)


def _print_summary(reports, label, dry_run):
    print(f"posext resize -> {label}{' (dry run: nothing written)' if dry_run else ''}")
    for r in reports:
        what = ", ".join(f"{f['key']} {f['action']} {f.get('old_shape')}->{f.get('new_shape')}"
                         for f in r["findings"]) or r["reason"]
        dest = f" -> {r['output']}" if r["status"] == "ok" else ""
        print(f"  [{r['status']}] {r['input']}{dest}: {what}")
    counts = {s: sum(r["status"] == s for r in reports) for s in ("ok", "dry-run", "skipped", "failed")}
    print("summary: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    sys.stdout.flush()
    for r in reports:
        if r["status"] == "failed":
            print(f"posext resize: failed: {r['input']}: {r['reason']}", file=sys.stderr)


