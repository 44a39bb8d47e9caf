"""Run the zoo and print a markdown pass table (a tool, not a test).

    python tests/zoo/report.py [--only timm|hf] [NAME ...]

Each zoo module (``tests/zoo/timm_zoo.py``, ``tests/zoo/hf_zoo.py``; a missing one is left out) exposes
a list of cases (``ZOO_CASES``; ``HF_CASES`` / ``TIMM_CASES`` / ``CASES`` also accepted) and
``run_case(case)``, whose result has ``name``, ``resized`` (keys whose tensors changed), ``load_forward``
(True, or the failure as text), ``error`` (None or text) and ``equal_to_reference`` (``yes`` / ``no`` /
``no adapter`` / ``adapter fails``: the resized dict against the library's own resize, where it has one).
"""
import argparse
import importlib
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

ZOOS = [("timm", "tests.zoo.timm_zoo"), ("hf", "tests.zoo.hf_zoo")]


def load_zoos(only=None):
    zoos = []
    for label, modname in ZOOS:
        if only and label != only:
            continue
        try:
            mod = importlib.import_module(modname)
        except ImportError as e:
            print(f"<!-- {modname} not available: {e} -->", file=sys.stderr)
            continue
        cases = next((getattr(mod, a) for a in ("ZOO_CASES", "HF_CASES", "TIMM_CASES", "CASES")
                      if hasattr(mod, a)), None)
        if cases is None or not hasattr(mod, "run_case"):
            print(f"<!-- {modname} has no case list / run_case -->", file=sys.stderr)
            continue
        zoos.append((label, list(cases), mod.run_case))
    return zoos


def case_name(case):
    return getattr(case, "id", None) or getattr(case, "name", None) or str(case)


def row(label, case, res, secs):
    name = getattr(res, "name", None) or case_name(case)
    if getattr(case, "skip", ""):
        return f"| {label} | {name} | - | skipped: {case.skip} | - | - |"
    err = getattr(res, "error", None)
    if err:
        return f"| {label} | {name} | - | error: {str(err).splitlines()[0][:100]} | - | {secs:.1f} |"
    lf = getattr(res, "load_forward", None)
    ok = "ok" if lf is True else f"FAIL: {str(lf)[:100]}"
    eq = getattr(res, "equal_to_reference", None) or getattr(res, "equal_to_timm", "?")
    resized = getattr(res, "resized", None)
    n = len(resized) if resized is not None else "?"
    return f"| {label} | {name} | {n} | {ok} | {eq} | {secs:.1f} |"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=[z[0] for z in ZOOS])
    ap.add_argument("names", nargs="*")
    args = ap.parse_args(argv)
    print("| zoo | architecture | tensors resized | strict load + forward | equal to library's own resize "
          "| s |")
    print("|---|---|---|---|---|---|")
    failed = 0
    for label, cases, run_case in load_zoos(args.only):
        for case in cases:
            if args.names and case_name(case) not in args.names:
                continue
            t0 = time.time()
            res = None if getattr(case, "skip", "") else run_case(case)
            line = row(label, case, res, time.time() - t0)
            failed += ("FAIL" in line or "error:" in line or "| no |" in line)
            print(line, flush=True)
    print(f"\n{failed} failing row(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
