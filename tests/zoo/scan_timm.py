"""Spec scan of the timm zoo (a tool, not a test): for each case of ``timm_cases.TIMM_CASES`` build the
model at its native size and at the new size, and record which state-dict keys change shape, the
patch-embedding convolutions (kernel / stride), and whether timm's own ``checkpoint_filter_fn`` turns the
native state dict into one that loads strictly into the new model.

    python tests/zoo/scan_timm.py OUT.json [OUT.md] [name ...]
"""
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from timm_cases import TIMM_CASES  # noqa: E402
from timm_zoo import build, filter_fn_of, forward_ok, patch_convs  # noqa: E402


def shape_diff(old_sd, new_sd):
    changed = {k: [list(old_sd[k].shape), list(new_sd[k].shape)]
               for k in old_sd if k in new_sd and old_sd[k].shape != new_sd[k].shape}
    only_old = sorted(set(old_sd) - set(new_sd))
    only_new = sorted(set(new_sd) - set(old_sd))
    return changed, only_old, only_new


def scan_case(case):
    rec = {"name": case.name, "kwargs": {k: list(v) if isinstance(v, tuple) else v
                                         for k, v in case.kwargs.items()},
           "note": case.note, "control": case.control}
    t0 = time.time()
    old = build(case.name, case.kwargs, case.native)
    rec["module"] = type(old).__module__.replace("timm.models.", "")
    rec["native"] = list(old.zoo_image_size)
    rec["params"] = sum(p.numel() for p in old.parameters())
    rec["forward_native"] = forward_ok(old, old.zoo_image_size)
    rec["secs_native"] = round(time.time() - t0, 2)
    t0 = time.time()
    tried = [tuple(case.new)]
    if not case.square_only:
        tried.append((case.new[0], case.new[0]))
    new, err = None, None
    for size in tried:
        try:
            new = build(case.name, case.kwargs, size)
            fwd = forward_ok(new, size)
            if fwd is not True:
                raise RuntimeError(fwd)
            rec["new"] = list(size)
            break
        except Exception as e:  # noqa: BLE001 - recorded in the spec
            err = f"{size}: {type(e).__name__}: {str(e)[:200]}"
            new = None
    rec["secs_new"] = round(time.time() - t0, 2)
    if new is None:
        rec["new_error"] = err
        return rec
    rec["square_only"] = rec["new"][0] == rec["new"][1]
    if err:
        rec["non_square_error"] = err
    osd, nsd = old.state_dict(), new.state_dict()
    changed, only_old, only_new = shape_diff(osd, nsd)
    bufs = {n for n, _ in old.named_buffers()} | {n for n, _ in new.named_buffers()}
    rec["changed"] = changed
    rec["only_native"] = only_old
    rec["only_new"] = only_new
    rec["persistent_buffers_changed"] = sorted(k for k in list(changed) + only_old + only_new if k in bufs)
    rec["persistent_buffers"] = sorted(k for k in osd if k in bufs)[:20]
    rec["nonpersistent_buffers"] = sorted({n.split(".")[-1] for n, _ in old.named_buffers()} -
                                          {k.split(".")[-1] for k in osd})
    rec["patch_convs"] = patch_convs(old)
    fn = filter_fn_of(old)
    rec["filter_fn"] = fn.__module__ + "." + fn.__name__ if fn else None
    if fn is not None:
        try:
            out = fn({k: v.clone() for k, v in osd.items()}, new)
            missing, unexpected = new.load_state_dict(out, strict=False)
            try:
                new.load_state_dict(out, strict=True)
                rec["filter_fn_strict"] = "yes"
            except Exception as e:  # noqa: BLE001
                rec["filter_fn_strict"] = "no"
                rec["filter_fn_error"] = str(e).replace("\n", " ")[:300]
        except Exception as e:  # noqa: BLE001
            rec["filter_fn_strict"] = "no"
            rec["filter_fn_error"] = f"{type(e).__name__}: {str(e)[:300]}"
    return rec


def fmt_changed(rec, limit=4):
    items = list(rec.get("changed", {}).items())
    groups = {}
    for k, (a, b) in items:
        stem = ".".join(p if not p.isdigit() else "N" for p in k.split("."))
        groups.setdefault((stem, str(a), str(b)), []).append(k)
    parts = [f"`{s}` {a}->{b}" + (f" (x{len(ks)})" if len(ks) > 1 else "")
             for (s, a, b), ks in groups.items()]
    return "; ".join(parts[:limit]) + (f"; +{len(parts) - limit} more" if len(parts) > limit else "")


def to_markdown(recs):
    lines = ["| arch | module | native -> new | changed keys (old -> new shape) | only-in-one | patch convs "
             "(key k/s) | filter_fn strict | s |", "|" + "---|" * 8]
    for r in recs:
        if "new" not in r:
            err = r.get("new_error", "")[:80]
            lines.append(f"| {r['name']} | {r.get('module', '?')} | build failed: {err} | | | | | |")
            continue
        convs = ", ".join(f"`{c['key']}` {c['kernel']}/{c['stride']}" for c in r["patch_convs"][:2])
        only = len(r["only_native"]) + len(r["only_new"])
        ff = r.get("filter_fn_strict", "no adapter")
        if ff == "no":
            err = " ".join(r.get("filter_fn_error", "").split())
            ff = "no: " + err.split(":", 2)[-1].strip()[:110]
        sq = " (square only)" if r["square_only"] else ""
        lines.append(f"| {r['name']} | {r['module']} | {r['native']} -> {r['new']}{sq} | {fmt_changed(r)} "
                     f"| {only} | {convs} | {ff} | {r['secs_native'] + r['secs_new']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv):
    torch.manual_seed(0)
    torch.set_num_threads(2)
    out_json = argv[0]
    out_md = argv[1] if len(argv) > 1 and argv[1].endswith(".md") else None
    names = [a for a in argv[1:] if not a.endswith(".md")]
    recs = []
    for case in TIMM_CASES:
        if names and case.name not in names:
            continue
        try:
            rec = scan_case(case)
        except Exception as e:  # noqa: BLE001
            rec = {"name": case.name, "new_error": f"native build: {type(e).__name__}: {str(e)[:200]}"}
        print(json.dumps(rec)[:400], flush=True)
        recs.append(rec)
    with open(out_json, "w") as f:
        json.dump(recs, f, indent=1)
    if out_md:
        with open(out_md, "w") as f:
            f.write(to_markdown(recs))


if __name__ == "__main__":
    main(sys.argv[1:])
