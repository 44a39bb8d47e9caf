"""Zoo job: posext's resize of whole state dicts of several model families vs timm's own checkpoint filter.

Each row builds one timm architecture at its native size and at a new image size (random weights), then
times ``resize_state_dict(sd, image_size=new)`` (detection, planning, every grid-dependent tensor) and, where
timm's ``checkpoint_filter_fn`` resizes what the new model needs, that filter on the same state dict. Both
run in this process on the CPU; the tensors they produce are compared (max abs difference).
"""
import importlib
import time

import torch

from .common import installed, span

WHAT = ("posext resize_state_dict(image_size=...) of whole timm state dicts vs timm's checkpoint_filter_fn "
        "(absolute tables, BEiT relative-position tables, MaxViT windows, SAM rel_pos, LeViT biases, a new "
        "patch size)")
# (architecture, keyword arguments, new image size, new patch size)
CASES = [
    ("vit_base_patch16_224", {}, (384, 512), None),
    ("vit_base_patch16_224", {}, (224, 224), (8, 8)),
    ("beit_base_patch16_224", {}, (384, 512), None),
    ("maxvit_tiny_tf_224", {}, (256, 320), None),
    ("samvit_base_patch16", {"img_size": 512}, (512, 640), None),
    ("levit_256", {}, (256, 320), None),
    ("swin_tiny_patch4_window7_224", {}, (64, 96), None),
]
QUICK = 3
REPEATS = 3


def plan(devices, quick=False):
    return (QUICK if quick else len(CASES)) if installed("timm") else 0, None


def _median(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2], out


def _timm_filter(model):
    module = importlib.import_module(type(model).__module__)
    return getattr(module, "checkpoint_filter_fn", None)


def _row(name, kwargs, new, patch, repeats):
    import timm

    from ..checkpoint import resize_state_dict

    torch.manual_seed(0)
    native = timm.create_model(name, pretrained=False, **kwargs)
    new_kwargs = dict(kwargs, img_size=new, **({"patch_size": patch} if patch else {}))
    target = timm.create_model(name, pretrained=False, **new_kwargs)
    sd = native.state_dict()
    posext_s, (out, applied) = _median(
        lambda: resize_state_dict(sd, image_size=new, **({"patch_size": patch} if patch else {})), repeats)
    target.load_state_dict(out, strict=True)  # the result is what the new model expects
    row = {"arch": name + (f" p{patch[0]}" if patch else ""), "new": f"{new[0]}x{new[1]}",
           "tensors": len(applied), "posext_ms": 1e3 * posext_s, "timm_ms": None, "ratio": None,
           "max_diff": None}
    filter_fn = _timm_filter(native)
    if filter_fn is None:
        return row
    timm_s, ref = _median(lambda: filter_fn(sd, target), repeats)
    expected = target.state_dict()
    if any(k not in ref or ref[k].shape != v.shape for k, v in expected.items()):
        return row  # timm's filter does not resize these tensors: no baseline
    diffs = [(out[k].float() - ref[k].float()).abs().max().item()
             for k in expected if out[k].is_floating_point() and out[k].numel()]
    row.update(timm_ms=1e3 * timm_s, ratio=posext_s / timm_s, max_diff=max(diffs, default=0.0))
    return row


def run(devices, quick=False):
    if not installed("timm"):
        return []
    cases = CASES[:QUICK] if quick else CASES
    return [_row(*case, repeats=1 if quick else REPEATS) for case in cases]


COLUMNS = [("arch", "architecture", "{}"), ("new", "new image", "{}"), ("tensors", "tensors", "{}"),
           ("posext_ms", "posext ms", "{:.1f}"), ("timm_ms", "timm filter ms", "{:.1f}"),
           ("ratio", "posext / timm", "{:.2f}x"), ("max_diff", "max abs diff", "{:.1e}")]
LEGEND = [
    ("tensors", "tensors = grid-dependent tensors posext resized (tables, relative-position tables, biases, "
                "kernels)"),
    ("posext_ms", "posext ms = resize_state_dict(sd, image_size=new): detection, plan and every resize"),
    ("timm_ms", "timm filter ms = timm's checkpoint_filter_fn(sd, new_model); empty where it does not resize "
                "what the new model needs (SAM rel_pos, LeViT biases)"),
    ("ratio", "posext / timm = posext ms / timm filter ms; lower is better"),
    ("max_diff", "max abs diff = largest absolute difference between posext's and timm's tensors"),
    (None, f"ms = median of {REPEATS} runs (1 with --quick), CPU, random weights"),
]


def summary(rows):
    timed = [r for r in rows if r["ratio"] is not None]
    out = []
    if timed:
        out.append(f"Where timm's filter resizes the same tensors, posext takes "
                   f"{span([r['ratio'] for r in timed], '{:.2f}x')} its time and agrees within "
                   f"{max(r['max_diff'] for r in timed):.1e}.")
    alone = [r["arch"] for r in rows if r["ratio"] is None]
    if alone:
        out.append(f"No timm filter resizes {', '.join(alone)}: posext's result loads strictly into the "
                   f"model built at the new size.")
    return out


plot = None
