"""`posext inspect`: the position embeddings of checkpoint files, read from their shapes (see
``shapes.py``). Inputs may be fsspec URLs: safetensors are read by ranges, other formats downloaded into a
local temp folder first."""
import contextlib
import sys

from .inputs import collect_inputs, target_conflicts
from .io import file_format
from .reporting import check_report_path, failure_reason, write_report
from .shapes import load_shapes
from .signals import Interrupted, stop_on_signals
from .storage import is_url, local_copy, local_path


def findings_rows(ckpt, options):
    from . import find_position_embeddings

    rows = []
    for wrapper, state in ckpt.state_dicts.items():
        for f in find_position_embeddings(state, old_size=options.get("old_size"),
                                          num_prefix_tokens=options.get("num_prefix_tokens")):
            rows.append({"wrapper": wrapper, "shape": list(state[f.key].shape), **f.row()})
    return rows


def run_inspect(args) -> int:
    if args.json:
        check_report_path("inspect", args.json)
    found = collect_inputs([local_path(item) for item in args.inputs])
    conflicts = target_conflicts([(f, f) for f in found.files], True, None, args.json)
    if conflicts:
        for line in conflicts:
            print(f"posext inspect: refused: {line}", file=sys.stderr)
        return 1
    options = dict(old_size=args.old_size, num_prefix_tokens=args.prefix_tokens)
    report, errors = [], []
    header = (f"{'file':<40} {'wrapper':<10} {'key':<55} {'family':<14} {'layout':<16} {'grid':<7} "
              f"{'P':>2} action")
    print(header)
    with stop_on_signals():
        try:
            for path in found.files:
                try:
                    if path in found.hf_folders:
                        from .folder_jobs import inspect_hf_folder

                        ckpt, rows = None, inspect_hf_folder(path, options)
                        fmt = "hf-folder"
                    else:
                        with _readable(path) as local:
                            ckpt = load_shapes(local, unsafe_pickle=args.unsafe_pickle)
                            rows, fmt = findings_rows(ckpt, options), ckpt.format
                except Exception as exc:
                    reason = failure_reason(exc)
                    errors.append((path, reason))
                    print(f"{path:<40} ERROR {reason}")
                    report.append({"input": path, "error": reason})
                    continue
                if not rows:
                    print(f"{path:<40} (no position embedding found; format {fmt})")
                for r in rows:
                    grid = "x".join(map(str, r["old_grid"])) if r["old_grid"] else "-"
                    print(f"{path:<40} {r['wrapper'] or '-':<10} {r['key']:<55} {r['family']:<14} "
                          f"{r['layout']:<16} {grid:<7} {r['num_prefix_tokens']:>2} {r['action']}: "
                          f"{r['reason']}" + (f" [grid from {r['grid_from']}]" if r.get("grid_from") else ""))
                report.append({"input": path, "format": fmt, "findings": rows})
                del ckpt  # release the file's memory map before the next one
        except (Interrupted, KeyboardInterrupt) as exc:
            print(f"posext inspect: {exc if isinstance(exc, Interrupted) else 'interrupted'}",
                  file=sys.stderr)
            return exc.exit_code if isinstance(exc, Interrupted) else 130
    for item, reason in found.problems:
        errors.append((item, reason))
        print(f"{item:<40} ERROR {reason}")
        report.append({"input": item, "error": reason})
    sys.stdout.flush()
    for item, reason in errors:
        print(f"posext inspect: {item}: {reason}", file=sys.stderr)
    written = not args.json or write_report("inspect", args.json, report)
    return 1 if errors or not written else 0


def _readable(path):
    """A context giving a path to read ``path`` from: a store's pickle or .npz is downloaded first."""
    if is_url(path) and file_format(path) != "safetensors":
        return local_copy(path)
    return contextlib.nullcontext(path)
