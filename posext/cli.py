"""The `posext` command: `bench` (benchmarks), `inspect` / `resize` (checkpoint files), `info` (build facts)."""
import argparse
import json
import os
import sys

JOBS = ("resample", "sincos", "checkpoint", "rope", "factorized", "model", "kernels")
# Asked for by name only: `model` (whole ViT-B/L forwards: minutes on a small CPU) and `kernels` (per-op device
# timing, bandwidth and launches: the GPU proof kit runs it).
DEFAULT_JOBS = JOBS[:-2]


def _bench(args) -> int:
    import importlib

    from .bench import common

    devices = common.devices(args.device)
    jobs = DEFAULT_JOBS if args.jobs == "all" else tuple(j.strip() for j in args.jobs.split(","))
    unknown = [j for j in jobs if j not in JOBS]
    if unknown:
        raise SystemExit(f"posext bench: unknown job(s) {unknown}; choose from {list(JOBS)} or 'all'")
    os.makedirs(args.out, exist_ok=True)
    machine = common.machine()
    print(f"posext bench on {machine['cpu']} ({machine['num_threads']} threads), torch {machine['torch']}, "
          f"backend {machine['backend']}, CUDA kernels built: {machine['cuda_kernels_built']}")
    for job in jobs:
        module = importlib.import_module(f".bench.{job}", __package__)
        rows = module.run(devices, quick=args.quick)
        print(f"\n== {job} ==\n{common.format_table(rows, module.COLUMNS)}")
        json_path = os.path.join(args.out, f"{job}.json")
        png_path = os.path.join(args.out, f"{job}.png")
        common.write_json(json_path, job, rows)
        if any(key for key, _ in module.PLOT["speedup_keys"]):
            where = machine["device_name"] if "cuda" in devices and machine["device_name"] else machine["cpu"]
            common.plot_speedups(png_path, f"posext {job} speedup ({where})", rows, **module.PLOT)
            print(f"wrote {json_path} and {png_path}")
        else:
            print(f"wrote {json_path}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="posext", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="benchmark posext against the usual PyTorch / timm / NumPy paths")
    bench.add_argument("--jobs", default="all",
                       help=f"comma-separated, from {list(JOBS)} (default 'all': all but 'model' and 'kernels')")
    bench.add_argument("--device", default="all", choices=["all", "cpu", "cuda"],
                       help="all = cpu, plus cuda when a GPU is visible")
    bench.add_argument("--out", default=os.path.join("benchmarks", "out"), help="folder for JSON and PNG results")
    bench.add_argument("--quick", action="store_true", help="short timing runs (smoke test)")
    bench.set_defaults(func=_bench)
    from .checkpoint.commands import add_parsers

    add_parsers(sub)
    info = sub.add_parser("info", help="print the active backend, versions and build facts as JSON")
    info.set_defaults(func=lambda args: print(json.dumps(__import__("posext").info(), indent=1)) or 0)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
