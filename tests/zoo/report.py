"""Run the zoo and print a markdown pass table (a tool, not a test).

    python tests/zoo/report.py [--only timm|hf] [NAME ...]

Each zoo module (``tests/zoo/timm_zoo.py``, ``tests/zoo/hf_zoo.py``; a missing one is left out) exposes
a list of cases (``ZOO_CASES``; ``HF_CASES`` / ``TIMM_CASES`` / ``CASES`` also accepted) and
``run_case(case)``, whose result (an object or a dict) has ``name``, ``resized`` (the keys whose tensors
changed, or their count), ``error`` (empty or text), and either ``load_forward`` (True, or the failure as
text) or ``loaded`` + ``forward`` (bools), and either ``equal_to_reference`` (``yes`` / ``no`` /
``no adapter`` / ``adapter fails``) or ``adapter_equal`` (True / False / None = no adapter): the resized
checkpoint against the library's own resize, where it has one.
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


def normalize(res) -> dict:
    """The row fields of a result object (timm zoo) or dict (HF zoo) in one shape."""
    get = res.get if isinstance(res, dict) else (lambda k, d=None: getattr(res, k, d))
    resized = get("resized")
    n = len(resized) if isinstance(resized, (list, tuple)) else resized
    if get("load_forward") is not None:
        lf = get("load_forward")
    elif get("loaded") is not None:
        lf = True if get("loaded") and get("forward") else ("forward not finite" if get("loaded") else
                                                           "no strict load")
    else:
        lf = None
    eq = get("equal_to_reference")
    if eq is None and isinstance(res, dict):
        ae = get("adapter_equal")
        eq = "no adapter" if ae is None else ("yes" if ae else "no")
    return {"name": get("name"), "resized": "?" if n is None else n, "load_forward": lf,
            "equal": eq or "?", "error": get("error") or None}


def row(label, case, res, secs):
    if getattr(case, "skip", ""):
        return f"| {label} | {case_name(case)} | - | skipped: {case.skip} | - | - |"
    r = normalize(res)
    name = r["name"] or case_name(case)
    if r["error"]:
        err = " ".join(str(r["error"]).split())[:110]
        if r["load_forward"] is None or r["load_forward"] is not True:
            return f"| {label} | {name} | {r['resized']} | error: {err} | - | {secs:.1f} |"
    lf = r["load_forward"]
    ok = "ok" if lf is True else f"FAIL: {str(lf)[:110]}"
    return f"| {label} | {name} | {r['resized']} | {ok} | {r['equal']} | {secs:.1f} |"


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
