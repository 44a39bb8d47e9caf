"""The zoo's pass table: one row per architecture of the timm and Hugging Face zoos (a tool, not a test).

    python -m tests.zoo.report                         # the table (markdown) on stdout
    python -m tests.zoo.report --times                 # with a seconds column
    python -m tests.zoo.report --only timm NAME ...    # some rows only
    python -m tests.zoo.report --readme README.md      # rewrite the README's generated block
    python -m tests.zoo.report --readme README.md --check   # exit 1 when that block differs from a run

Each zoo module (``tests/zoo/timm_zoo.py``, ``tests/zoo/hf_zoo.py``; a missing one is left out) exposes a list
of cases (``ZOO_CASES``; ``HF_CASES`` / ``TIMM_CASES`` / ``CASES`` also accepted) and ``run_case(case)``,
whose result (an object or a dict) has ``name``, ``resized`` (the keys whose tensors changed, or their count),
``error`` (empty or text), and either ``load_forward`` (True, or the failure as text) or ``loaded`` +
``forward`` (bools), and either ``timm_status`` / ``timm_diff`` (timm zoo) or ``adapter_equal``
(True / False / None = no adapter; HF zoo): the resized checkpoint against the family's own resize.

Columns: the architecture, its library, how many tensors the resize rewrote, whether the result loads with
``strict=True`` into the model built at the new size and runs a finite forward there, and whether it equals
the family's own adapter: timm's ``checkpoint_filter_fn`` output (state dicts within 1e-5), or transformers'
run-time ``interpolate_pos_encoding`` (forward outputs within 1e-5). A case whose ``refused`` names a key
must be refused with an error naming that key. The README block sits between ``<!-- zoo:pass-table -->``
and ``<!-- /zoo:pass-table -->``.
"""
import argparse
import importlib
import os
import re
import sys
import time
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

ZOOS = [("timm", "tests.zoo.timm_zoo"), ("hf", "tests.zoo.hf_zoo")]
LIBRARY = {"timm": "timm", "hf": "transformers"}
BLOCK_NAME = "zoo:pass-table"
BLOCK = re.compile(r"<!-- zoo:pass-table -->\n(?P<body>.*?)\n?<!-- /zoo:pass-table -->", re.S)
HEADER = ("| architecture | library | tensors resized | strict load + forward | equal to the family's own "
          "adapter |")
LEGEND = (
    "- *tensors resized*: tensors the resize rewrote (position tables, relative-position tables, attention "
    "biases, index buffers); 0 where the checkpoint has nothing sized by the image, or only tables the "
    "model resizes itself at run time.",
    "- *equal to the family's own adapter*: timm: the state dict equals timm's `checkpoint_filter_fn` output "
    "within 1e-5 (default settings, bicubic + antialias); transformers: the resized model's output equals "
    "the native model run with `interpolate_pos_encoding` (or its forward's own resize) within 1e-5, with "
    "the interpolation settings of that path. *no adapter*: the library has none for that family; *adapter "
    "keeps `KEY` at the old size*: timm's filter leaves that tensor as it was, so its output does not load "
    "at the new size.",
)


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


def architecture(label, case) -> str:
    """The timm model name; for a transformers case its name and model class."""
    name = case_name(case)
    model = getattr(case, "model", None)
    if label == "hf" and isinstance(model, str):
        return f"{name} (`{model.rsplit('.', 1)[-1]}`)"
    return f"`{name}`"


def _one_line(text, limit=None) -> str:
    text = " ".join(str(text).split())
    return text if limit is None or len(text) <= limit else text[:limit - 3] + "..."


def _adapter_cell(get) -> str:
    """The adapter column from a result's fields."""
    status = get("timm_status")
    if status is not None:  # timm zoo
        if status == "ok":
            return "no" if get("timm_diff") else "yes"
        if status == "no adapter":
            return "no adapter"
        m = re.search(r"size mismatch for ([\w.]+)", str(status))
        if m:
            return f"adapter keeps `{m.group(1)}` at the old size"
        return f"adapter fails: {_one_line(status, 80)}"
    eq = get("equal_to_reference")
    if eq is not None:
        return str(eq)
    ae = get("adapter_equal")
    return "no adapter" if ae is None else ("yes" if ae else "no")


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
    return {"name": get("name"), "resized": "?" if n is None else n, "load_forward": lf,
            "equal": _adapter_cell(get), "error": get("error") or None}


def _refusal(case, error) -> dict:
    """What the row of a case that must be refused says, and whether the refusal is the expected one."""
    text = str(error or "")
    first = text.splitlines()[0] if text else ""
    if not first.startswith("GeometryError") or case.refused not in first:
        why = _one_line(first, 110) if first else "resized instead of refused"
        return {"load": f"FAIL: expected a refusal naming `{case.refused}`: {why}", "equal": "-", "ok": False}
    # "GeometryError: KEY: WHAT: not resized by posext; ..." -> WHAT
    what = first.split(f"{case.refused}: ", 1)[-1].split(": not resized", 1)[0]
    return {"load": f"refused (names `{case.refused}`)", "equal": f"refused: {what}", "ok": True}


def evaluate(label, case, res) -> dict:
    """The cells of one row, and whether the row passes."""
    arch = architecture(label, case)
    lib = LIBRARY.get(label, label)
    if getattr(case, "skip", ""):
        return {"cells": [arch, lib, "-", f"skipped: {case.skip}", "-"], "ok": True, "kind": "skipped"}
    r = normalize(res)
    if getattr(case, "refused", ""):
        ref = _refusal(case, r["error"])
        return {"cells": [arch, lib, "-", ref["load"], ref["equal"]], "ok": ref["ok"], "kind": "refused"}
    if r["error"] and r["load_forward"] is not True:
        err = _one_line(str(r["error"]).splitlines()[0], 110)
        return {"cells": [arch, lib, str(r["resized"]), f"error: {err}", "-"], "ok": False, "kind": "error"}
    lf = r["load_forward"]
    load = "ok" if lf is True else f"FAIL: {_one_line(lf, 110)}"
    ok = lf is True and r["equal"] != "no"
    untouched = getattr(case, "control", False) or getattr(case, "left_alone", False)
    if untouched and r["resized"] not in (0, "?"):
        ok, load = False, f"FAIL: {r['resized']} tensors changed where none may"
    kind = "control" if getattr(case, "control", False) else ("resized" if r["resized"] else "untouched")
    return {"cells": [arch, lib, str(r["resized"]), load, r["equal"]], "ok": ok, "kind": kind}


def table_line(cells) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def summary(rows) -> str:
    """One sentence over the evaluated rows."""
    timm = [r for r in rows if r["label"] == "timm"]
    hf = [r for r in rows if r["label"] == "hf"]
    count = lambda rs, kind: sum(r["kind"] == kind for r in rs)  # noqa: E731
    classes = {r["cells"][0].split("(`", 1)[-1] for r in hf}
    parts = []
    if timm:
        extra = [f"{count(timm, k)} {what}" for k, what in (("resized", "with tensors resized"),
                                                            ("untouched", "with nothing to resize"),
                                                            ("control", "controls without grid tensors"),
                                                            ("refused", "refused by key"),
                                                            ("skipped", "skipped")) if count(timm, k)]
        parts.append(f"{len(timm)} timm architectures ({', '.join(extra)})")
    if hf:
        parts.append(f"{len(hf)} Hugging Face cases over {len(classes)} model classes "
                     f"({count(hf, 'resized')} with tensors resized)")
    compared = [r for r in rows if r["cells"][4] in ("yes", "no")]
    equal = sum(r["cells"][4] == "yes" for r in compared)
    failing = sum(not r["ok"] for r in rows)
    verdict = "every row passes" if not failing else f"{failing} failing row(s)"
    return (f"{' and '.join(parts)}; equal to the family's own adapter in {equal} of {len(compared)} "
            f"comparisons; {verdict}.")


def run(only=None, names=(), times=False, out=None):
    """Run the zoos; print each row as it comes (when ``out``); return the evaluated rows."""
    rows = []
    header = HEADER + (" s |" if times else "")
    sep = "|---" * (6 if times else 5) + "|"
    if out:
        print(header, file=out)
        print(sep, file=out)
    for label, cases, run_case in load_zoos(only):
        for case in cases:
            if names and case_name(case) not in names:
                continue
            t0 = time.time()
            res = None if getattr(case, "skip", "") else run_case(case)
            row = dict(evaluate(label, case, res), label=label, seconds=time.time() - t0)
            rows.append(row)
            if out:
                cells = row["cells"] + ([f"{row['seconds']:.1f}"] if times else [])
                print(table_line(cells), file=out, flush=True)
    return rows


def render_block(rows) -> str:
    """The README block, markers included."""
    lines = [summary(rows), "", HEADER, "|---" * 5 + "|"] + [table_line(r["cells"]) for r in rows]
    return "\n".join([f"<!-- {BLOCK_NAME} -->", *lines, "", *LEGEND, f"<!-- /{BLOCK_NAME} -->"])


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tests.zoo.report", description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=[z[0] for z in ZOOS])
    ap.add_argument("--times", action="store_true", help="add a seconds column (stdout table only)")
    ap.add_argument("--readme", metavar="PATH", help="rewrite the generated block of this Markdown file")
    ap.add_argument("--check", action="store_true", help="with --readme: compare only, exit 1 when stale")
    ap.add_argument("names", nargs="*")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.readme:
        if args.only or args.names:
            ap.error("--readme renders the whole zoo: no --only / names")
        with open(args.readme) as f:
            text = f.read()
        if len(BLOCK.findall(text)) != 1:
            raise SystemExit(f"{args.readme}: expected one <!-- {BLOCK_NAME} --> block")
        rows = run()
        new = BLOCK.sub(lambda m: render_block(rows), text)
        if args.check:
            stale = new != text
            print(f"{args.readme}: the zoo pass table {'differs from' if stale else 'matches'} a fresh run")
            return 1 if stale else 0
        if new != text:
            with open(args.readme, "w") as f:
                f.write(new)
        print(f"{args.readme}: zoo pass table {'rewritten' if new != text else 'unchanged'}; {summary(rows)}")
        return 0 if all(r["ok"] for r in rows) else 1
    rows = run(args.only, args.names, args.times, out=sys.stdout)
    print(f"\n{summary(rows)}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
