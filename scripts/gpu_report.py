"""The GPU proof kit's records: machine facts, the results JSON assembled from each stage's output, and the
split of a results file into per-op files for benchmarks/results/.

    python scripts/gpu_report.py env --out env.json [--dry-run]        machine, driver, torch, CUDA facts
    python scripts/gpu_report.py assemble --work W --out O [--dry-run] [--final]
        -> O/gpu_results.json; with --final prints the summary and exits 0 (pass), 1 (fail), 2 (incomplete)
    python scripts/gpu_report.py split gpu_results.json --dest benchmarks/results
        -> <op>_cuda_<device>.json per op, and a Markdown table per op on stdout

Only `env` imports torch, so assembling stays fast and works after a crash.
"""
import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

SCHEMA = "posext-gpu-check/1"
STAGES = ("env", "wheels", "build", "tests", "sanitizer", "bench")
TOOLS = ("memcheck", "racecheck", "initcheck", "synccheck")
STAGE_KEYS = {"status", "rc", "seconds", "log"}
TOP_KEYS = {"schema", "dry_run", "status", "date", "commit", "environment", "stages", "tests", "sanitizer",
            "bench", "targets"}
OK_STATUSES = ("ok", "dry-run")


def _command(args):
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=60).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(dry_run: bool) -> dict:
    import platform

    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
           "cpu_count": os.cpu_count(), "machine": platform.machine(),
           "cuda_available": torch.cuda.is_available(), "nvcc": _command(["nvcc", "--version"]),
           "nvidia_smi": _command(
               ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,"
                "clocks.mem,temperature.gpu,power.draw", "--format=csv,noheader"])}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env["device"] = {"name": props.name, "capability": f"{props.major}.{props.minor}",
                         "sm_count": props.multi_processor_count, "memory_bytes": props.total_memory,
                         "l2_bytes": getattr(props, "L2_cache_size", None)}
    else:
        env["device"] = {"name": "cpu (dry run)" if dry_run else None}
    return env


def _stages(work: str) -> dict:
    stages = {name: {"status": "not run", "rc": None, "seconds": None, "log": None} for name in STAGES}
    path = os.path.join(work, "stages.tsv")
    if os.path.exists(path):
        for line in open(path):
            name, status, rc, seconds, log = line.rstrip("\n").split("\t")
            stages[name] = {"status": status, "rc": int(rc), "seconds": round(float(seconds), 1),
                            "log": log or None}
    return stages


def junit_summary(path: str) -> dict:
    """Counts and the names of failed / skipped tests from a pytest --junitxml file."""
    root = ET.parse(path).getroot()
    cases = root.iter("testcase")
    out = {"collected": 0, "passed": 0, "failed": 0, "errors": 0, "skipped": 0, "failures": [], "skips": []}
    for case in cases:
        out["collected"] += 1
        name = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag: child for child in case}
        if "failure" in kinds or "error" in kinds:
            out["failed" if "failure" in kinds else "errors"] += 1
            out["failures"].append(name)
        elif "skipped" in kinds:
            out["skipped"] += 1
            out["skips"].append(f"{name}: {kinds['skipped'].get('message', '')}"[:300])
        else:
            out["passed"] += 1
    return out


def collected_count(text: str):
    match = re.search(r"(\d+)(?:/\d+)? tests? collected", text)
    return int(match.group(1)) if match else None


_NOT_ERRORS = ("COMPUTE-SANITIZER", "ERROR SUMMARY", "RACECHECK SUMMARY", "LEAK SUMMARY",
               "Target application", "Saved host backtrace", "Warning")


def sanitizer_summary(text: str) -> dict:
    """Errors from one compute-sanitizer log: the reported total, and how many of the reported errors were in
    posext's own kernels (their first frame names posext) vs in other code (torch's kernels, the runtime).
    When the total cannot be attributed, every error counts as posext's."""
    total = None
    match = re.findall(r"ERROR SUMMARY: (\d+) errors?", text)
    if match:
        total = int(match[-1])
    blocks = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^========= (?=\S)", line) and not line[10:].startswith(_NOT_ERRORS):
            frame = next((lines[j] for j in range(i + 1, min(i + 4, len(lines)))
                          if re.match(r"^=+\s+at ", lines[j])), line)
            blocks.append("posext" in frame)
    unsupported = bool(re.search(r"Device not supported|not supported on this|"
                                 r"Unable to find injection library", text))
    posext_errors = sum(blocks)
    if total is not None and total > len(blocks):
        posext_errors += total - len(blocks)  # unattributed: assume the worst
    return {"errors": total, "posext_errors": posext_errors if total is not None else None,
            "foreign_errors": len(blocks) - sum(blocks), "unsupported": unsupported}


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _json(path):
    text = _read(path)
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _tests(work: str) -> dict:
    junit = os.path.join(work, "junit.xml")
    if os.path.exists(junit):
        try:
            return junit_summary(junit)
        except ET.ParseError as exc:
            return {"collected": None, "error": f"junit unreadable: {exc}"}
    return {"collected": collected_count(_read(os.path.join(work, "collect.txt")) or ""), "passed": 0,
            "failed": 0, "errors": 0, "skipped": 0, "failures": [], "skips": []}


def _sanitizer(work: str, dry_run: bool) -> dict:
    out = {}
    for tool in TOOLS:
        driver = _json(os.path.join(work, f"driver_{tool}.json"))
        rc_text = _read(os.path.join(work, f"sanitizer_{tool}.rc"))
        entry = {"status": "not run",
                 "rc": int(rc_text) if rc_text and rc_text.strip().lstrip("-").isdigit() else None,
                 "driver_checks": sum(driver["calls"].values()) if driver else None,
                 "driver_failures": driver["failures"] if driver else None}
        log = _read(os.path.join(work, f"sanitizer_{tool}.log"))
        if dry_run:
            entry.update(errors=None, posext_errors=None, foreign_errors=None, unsupported=False)
            entry["status"] = ("dry-run" if driver is not None and not driver["failures"] and entry["rc"] == 0
                               else "failed")
        elif log is not None:
            entry.update(sanitizer_summary(log))
            if entry["unsupported"]:
                entry["status"] = "unavailable"
            elif entry["rc"] == 124:
                entry["status"] = "timeout"
            elif entry["errors"] is None or driver is None:
                entry["status"] = "failed"  # the tool or the driver died before its summary
            elif entry["posext_errors"] or driver["failures"] or entry["rc"] not in (0, None):
                entry["status"] = "failed"
            else:
                entry["status"] = "ok"
        out[tool] = entry
    if not dry_run and _read(os.path.join(work, "sanitizer_missing")) is not None:
        for entry in out.values():
            entry["status"] = "unavailable"
    return out


def _pick(rows, **match):
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def targets(rows, dry_run: bool) -> list:
    """The tuning targets, evaluated on the benchmark rows (never on a CPU dry run: `met` is None there)."""
    def entry(name, values, better, limit, unit):
        values = [v for v in values if v is not None]
        value = (max(values) if better == "<=" else min(values)) if values else None
        met = None if dry_run or value is None else (value <= limit if better == "<=" else value >= limit)
        return {"target": name, "value": value, "unit": unit, "limit": f"{better} {limit}", "met": met}

    pe = _pick(rows, op="resample", size="pos-embed", **{"pass": "fwd"})
    large = lambda op: [r.get("frac_dram") for r in _pick(rows, op=op, size="large", **{"pass": "fwd"})]  # noqa: E731
    launches = [r.get("posext_launches") for r in rows if r.get("op") != "copy" and r.get("pass") == "fwd"]
    return [entry("resample device time per call, pos-embed sizes", [r.get("posext_us") for r in pe], "<=",
                  5.0, "us"),
            entry("resample vs the torch path, pos-embed sizes", [r.get("x_torch") for r in pe], ">=", 5.0,
                  "x"),
            entry("resample at large batched sizes, of copy bandwidth", large("resample"), ">=", 0.7,
                  "fraction"),
            entry("sincos_2d at large sizes, of copy bandwidth", large("sincos_2d"), ">=", 0.7, "fraction"),
            entry("rope_2d apply at large sizes, of copy bandwidth", large("rope_2d"), ">=", 0.7, "fraction"),
            entry("resample_varlen, 32 images, of copy bandwidth", large("resample_varlen"), ">=", 0.7,
                  "fraction"),
            entry("kernel launches per API call", launches, "<=", 1, "launches")]


def assemble(work: str, out_dir: str, dry_run: bool) -> dict:
    stages = _stages(work)
    bench = _json(os.path.join(work, "bench", "kernels.json"))
    rows = bench["rows"] if bench else []
    results = {"schema": SCHEMA, "dry_run": dry_run, "status": None,
               "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "commit": os.environ.get("POSEXT_COMMIT") or None,
               "environment": _json(os.path.join(work, "env.json")),
               "stages": stages, "tests": _tests(work), "sanitizer": _sanitizer(work, dry_run),
               "bench": {"copy_GBps": next((r.get("copy_GBps") for r in rows if r.get("op") == "copy"), None),
                         "rows": rows},
               "targets": targets(rows, dry_run)}
    results["status"] = verdict(results)
    os.makedirs(out_dir, exist_ok=True)
    tmp = os.path.join(out_dir, f".gpu_results.{os.getpid()}.tmp")  # stages running side by side both report
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1)
    os.replace(tmp, os.path.join(out_dir, "gpu_results.json"))
    return results


def verdict(results: dict) -> str:
    """'fail' on any failed stage, test, skip or sanitizer finding; 'incomplete' when a check could not
    run."""
    stages, tests, tools = results["stages"], results["tests"], results["sanitizer"].values()
    if any(s["status"] in ("failed", "timeout") for s in stages.values()):
        return "fail"
    if tests.get("failed") or tests.get("errors") or (not results["dry_run"] and tests.get("skipped")):
        return "fail"
    if any(t["status"] in ("failed", "timeout") for t in tools):
        return "fail"
    if not results["dry_run"] and not tests.get("collected"):
        return "incomplete"
    if any(s["status"] not in OK_STATUSES for s in stages.values()) or any(
            t["status"] not in OK_STATUSES for t in tools):
        return "incomplete"
    return "pass"


def validate(results: dict) -> None:
    """Raises ValueError when a results dict does not follow the schema (the dry run and the GPU run share
    it)."""
    problems = []
    if set(results) != TOP_KEYS:
        problems.append(f"top-level keys {sorted(set(results) ^ TOP_KEYS)}")
    if results.get("schema") != SCHEMA:
        problems.append(f"schema {results.get('schema')!r}")
    if results.get("status") not in ("pass", "fail", "incomplete"):
        problems.append(f"status {results.get('status')!r}")
    stages = results.get("stages", {})
    for name in STAGES:
        if set(stages.get(name, {})) != STAGE_KEYS:
            problems.append(f"stage {name}: keys {sorted(stages.get(name, {}))}")
    if set(results.get("sanitizer", {})) != set(TOOLS):
        problems.append(f"sanitizer tools {sorted(results.get('sanitizer', {}))}")
    for key in ("passed", "failed", "errors", "skipped", "collected"):
        if key not in results.get("tests", {}):
            problems.append(f"tests.{key} missing")
    rows = results.get("bench", {}).get("rows", [])
    if stages.get("bench", {}).get("status") == "ok" and not any(r.get("op") == "copy" for r in rows):
        problems.append("bench: no copy-bandwidth row")
    for row in rows:
        if row.get("op") != "copy" and not {"op", "case", "dtype", "pass", "size", "posext_us"} <= set(row):
            problems.append(f"bench row {row.get('op')} {row.get('case')}: missing keys")
    if problems:
        raise ValueError("gpu_results.json does not follow the schema: " + "; ".join(problems))


def summary(results: dict) -> str:
    lines = [f"posext GPU proof kit: {results['status'].upper()}"
             + (" (dry run on CPU)" if results["dry_run"] else "")]
    env = results.get("environment") or {}
    smi = (env.get("nvidia_smi") or "").split(", ")
    lines.append(f"  device {(env.get('device') or {}).get('name')}, torch {env.get('torch')}, CUDA "
                 f"{env.get('torch_cuda')}, driver {smi[1] if len(smi) > 1 else None}")
    for name, s in results["stages"].items():
        lines.append(f"  {name:10s} {s['status']:12s} {s['seconds'] if s['seconds'] is not None else '':>6}s")
    t = results["tests"]
    lines.append(f"  tests: {t.get('collected')} collected, {t.get('passed')} passed, {t.get('failed')} "
                 f"failed, {t.get('errors')} errors, {t.get('skipped')} skipped")
    lines += [f"    FAILED {name}" for name in t.get("failures", [])[:20]]
    lines += [f"    SKIPPED {name}" for name in t.get("skips", [])[:10]]
    for tool, s in results["sanitizer"].items():
        lines.append(f"  {tool:10s} {s['status']:12s} errors {s.get('errors')} "
                     f"(posext {s.get('posext_errors')}, other code {s.get('foreign_errors')}), "
                     f"driver checks {s.get('driver_checks')}")
        lines += [f"    {f}" for f in (s.get("driver_failures") or [])[:5]]
    copy = results["bench"]["copy_GBps"]
    lines.append(f"  copy bandwidth {'n/a' if copy is None else f'{copy:.1f}'} GB/s, "
                 f"{len(results['bench']['rows'])} bench rows")
    for t in results["targets"]:
        value = "n/a" if t["value"] is None else f"{t['value']:.3g}"
        lines.append(f"  target {t['target']}: {value} {t['unit']} ({t['limit']}) met={t['met']}")
    return "\n".join(lines)


def split(path: str, dest: str) -> list:
    """Per-op files <op>_cuda_<device>.json from a GPU results file; prints a Markdown table per op."""
    results = json.load(open(path))
    if results["dry_run"]:
        raise SystemExit(f"{path} is a dry run: nothing measured on a GPU to commit")
    name = (results["environment"].get("device") or {}).get("name") or "gpu"
    slug = re.sub(r"[^a-z0-9]+", "", name.lower().split()[-1]) or "gpu"
    rows = results["bench"]["rows"]
    meta = {k: results[k] for k in ("date", "commit", "environment")}
    written = []
    for op in sorted({r["op"] for r in rows if r["op"] != "copy"}):
        target = os.path.join(dest, f"{op}_cuda_{slug}.json")
        with open(target, "w") as f:
            json.dump({"job": "kernels", "op": op, **meta, "copy_GBps": results["bench"]["copy_GBps"],
                       "rows": _pick(rows, op=op)}, f, indent=1)
        written.append(target)
        print(f"\n### {op}, {name}\n\n| case | dtype | AA | pass | posext us | eager us | launches "
              "| torch us | timm us | vs torch | vs timm | of copy bw |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in _pick(rows, op=op):
            cells = [r["case"], r["dtype"], r.get("aa"), r["pass"]] + [
                "" if r.get(k) is None else f"{r[k]:{fmt}}" for k, fmt in (
                    ("posext_us", ".1f"), ("posext_eager_us", ".1f"), ("posext_launches", "g"),
                    ("torch_us", ".1f"), ("timm_us", ".1f"), ("x_torch", ".1f"), ("x_timm", ".1f"),
                    ("frac_dram", ".0%"))]
            print("| " + " | ".join("" if c is None else str(c) for c in cells) + " |")
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("env")
    p.add_argument("--out", required=True)
    p.add_argument("--dry-run", action="store_true")
    p = sub.add_parser("assemble")
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--final", action="store_true")
    p = sub.add_parser("split")
    p.add_argument("results")
    p.add_argument("--dest", default=os.path.join("benchmarks", "results"))
    args = parser.parse_args(argv)
    if args.command == "env":
        with open(args.out, "w") as f:
            json.dump(environment(args.dry_run), f, indent=1)
        return 0
    if args.command == "split":
        split(args.results, args.dest)
        return 0
    results = assemble(args.work, args.out, args.dry_run)
    validate(results)
    if not args.final:
        return 0
    print(summary(results))
    return {"pass": 0, "fail": 1, "incomplete": 2}[results["status"]]


if __name__ == "__main__":
    sys.exit(main())
