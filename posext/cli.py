"""The `posext` command: `bench` (benchmarks), `inspect` / `resize` (checkpoint files),
`info` (build facts)."""
import argparse
import atexit
import json
import os
import sys

JOBS = ("resample", "sincos", "checkpoint", "rope", "factorized", "model", "kernels", "zoo", "varlen",
        "export", "batch")
# Asked for by name only: `model` (whole ViT-B/L forwards: minutes on a small CPU), `kernels` (per-op
# device timing, bandwidth and launches: the GPU proof kit runs it), `zoo` (whole state dicts of several
# model families resized, against timm's filters), `varlen` (mixed-aspect batches against the HF and timm
# native-resolution paths), `export` (the ONNX-exported resample in onnxruntime) and `batch` (posext resize
# commands over many files and one big file: gigabytes on disk).
DEFAULT_JOBS = JOBS[:5]


NO_MATPLOTLIB = ("posext bench: matplotlib is not installed, so no plots (pip install 'posext[plot]', or "
                 "'posext[bench]' for the timm and open_clip baselines too); tables and JSON are written")


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def _bench(args) -> int:
    import importlib
    import time

    from .bench import common, plots

    if args.readme:
        from .bench import readme

        return readme.main([])
    devices = common.devices(args.device)
    jobs = DEFAULT_JOBS if args.jobs == "all" else tuple(j.strip() for j in args.jobs.split(","))
    unknown = [j for j in jobs if j not in JOBS]
    if unknown:
        raise SystemExit(f"posext bench: unknown job(s) {unknown}; choose from {list(JOBS)} or 'all'")
    os.makedirs(args.out, exist_ok=True)
    machine = common.machine()
    print(f"posext bench on {machine['cpu']} ({machine['num_threads']} threads), torch {machine['torch']}, "
          f"backend {machine['backend']}, CUDA kernels built: {machine['cuda_kernels_built']}; "
          f"devices {', '.join(devices)}; jobs {', '.join(jobs)}")
    can_plot = plots.pyplot() is not None
    if not can_plot:
        print(NO_MATPLOTLIB)
    for number, job in enumerate(jobs, 1):
        module = importlib.import_module(f".bench.{job}", __package__)
        planned, floor_s = module.plan(devices, quick=args.quick)
        estimate = (f", timed calls alone >= {floor_s:.0f} s (slow calls and imports add more)"
                    if floor_s else "")
        print(f"\n[{number}/{len(jobs)}] {job}: {module.WHAT}; {_rows(planned)}{estimate}", flush=True)
        start = time.perf_counter()
        rows = module.run(devices, quick=args.quick)
        elapsed = time.perf_counter() - start
        print(common.format_table(rows, module.COLUMNS))
        print("\n".join(f"  {line}" for line in common.legend_lines(module.LEGEND, rows)))
        json_path = os.path.join(args.out, f"{job}.json")
        common.write_json(json_path, job, rows)
        written = [json_path]
        if module.plot is not None and can_plot:
            png_path = os.path.join(args.out, f"{job}.png")
            where = machine["device_name"] if "cuda" in devices and machine["device_name"] else machine["cpu"]
            module.plot(rows, png_path, f"posext {job} ({where})")
            written.append(png_path)
        print(f"[{number}/{len(jobs)}] {job} done: {_rows(len(rows))} in {elapsed:.1f} s; wrote "
              f"{' and '.join(written)}", flush=True)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="posext", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="benchmark posext against the usual PyTorch / timm / NumPy paths")
    bench.add_argument("--jobs", default="all",
                       help=f"comma-separated, from {list(JOBS)} "
                            "(default 'all': all but 'model', 'kernels', 'zoo', 'varlen', 'export' and "
                            "'batch')")
    bench.add_argument("--device", default="all", choices=["all", "cpu", "cuda"],
                       help="all = cpu, plus cuda when a GPU is visible")
    bench.add_argument("--out", default=os.path.join("benchmarks", "out"),
                       help="folder for JSON and PNG results")
    bench.add_argument("--quick", action="store_true", help="short timing runs (smoke test)")
    bench.add_argument("--readme", action="store_true",
                       help="time nothing: rewrite README.md's benchmark blocks from "
                            "benchmarks/results/*.json")
    bench.set_defaults(func=_bench)
    from .checkpoint.commands import add_parsers

    add_parsers(sub)
    info = sub.add_parser("info", help="print the active backend, versions and build facts as JSON")
    info.set_defaults(func=lambda args: print(json.dumps(__import__("posext").info(), indent=1)) or 0)
    args = parser.parse_args(argv)
    if args.command not in ("resize", "inspect"):  # those import torch when they need it
        __import__("posext").load()
    return args.func(args)


def run() -> None:
    """The console script: :func:`main`, then a fast exit. Once the command is done (files closed, output
    flushed, exit handlers run), tearing down torch's modules and libraries only costs time: most of a
    second on a small machine, which a one-file command would spend after its work."""
    code = main()
    atexit._run_exitfuncs()  # what a normal exit would run (logging's flush, multiprocessing's joins)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can reach it anyway
            pass
    os._exit(int(code or 0))


if __name__ == "__main__":
    run()
