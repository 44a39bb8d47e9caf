"""resample vs the hand-rolled permute -> F.interpolate -> permute -> cat path and timm's
resample_abs_pos_embed (same antialias setting; bicubic, align_corners=False), fp32 and bf16, forward and
forward+backward."""
import torch

from .. import resample
from ..resample import _resample_torch
from . import plots
from .common import MEDIAN_MS, SPEEDUP_MS, installed, span, timed_ms, timing_floor_s

WHAT = "posext.resample vs the torch path and timm: fp32/bf16, antialias off/on, forward and forward+backward"
DTYPES = (torch.float32, torch.bfloat16)

# (name, input shape, layout, new grid side). Token layouts have one class token.
CASES = [
    ("ViT-B/16 224->384", (1, 1 + 14 * 14, 768), "tokens", 24),
    ("ViT-L/16 256->592", (1, 1 + 16 * 16, 1024), "tokens", 37),
    ("ViT-L/14 518->224", (1, 1 + 37 * 37, 1024), "tokens", 16),
    ("ViT-L/16 384->1024", (1, 1 + 24 * 24, 1024), "tokens", 64),
    ("SAM-B NHWC 64->32", (1, 64, 64, 768), "nhwc", 32),
    ("batch 32 x ViT-B 16->24", (32, 1 + 16 * 16, 768), "tokens", 24),
]


def _torch_path(x, layout, side, antialias, prefix=1):
    """The hand-rolled path users write (float32 upcast for half, as timm and DINOv2 do); square grids."""
    if layout == "nhwc":
        b, h, w, c = x.shape
        return _resample_torch(x.reshape(b, h * w, c), (h, w), (side, side), 0, "bicubic", antialias, False,
                               (0.0, 0.0)).reshape(b, side, side, c)
    old = int(round((x.shape[1] - prefix) ** 0.5))
    return _resample_torch(x, (old, old), (side, side), prefix, "bicubic", antialias, False, (0.0, 0.0))


def _timm_fn(layout, batch, prefix=1):
    try:
        from timm.layers import resample_abs_pos_embed, resample_abs_pos_embed_nhwc
    except ImportError:
        return None
    if batch != 1:
        return None  # timm resamples one table at a time
    if layout == "nhwc":
        return lambda x, side, aa: resample_abs_pos_embed_nhwc(x, [side, side], antialias=aa)
    return lambda x, side, aa: resample_abs_pos_embed(x, [side, side], num_prefix_tokens=prefix, antialias=aa)


def _min_time(quick):
    return 0.02 if quick else 0.25


def plan(devices, quick=False):
    rows = len(devices) * len(CASES) * len(DTYPES) * 2 * 2
    has_timm = installed("timm")
    impls = sum(2 + (has_timm and shape[0] == 1) for _, shape, _, _ in CASES) * len(DTYPES) * 2 * 2
    return rows, timing_floor_s(len(devices) * impls, _min_time(quick))


def run(devices, quick=False):
    min_time = _min_time(quick)
    rows = []
    for device in devices:
        for name, shape, layout, side in CASES:
            timm_fn = _timm_fn(layout, shape[0])
            for dtype in DTYPES:
                x = torch.randn(shape, device=device).to(dtype)
                out_shape = resample(x, side).shape
                grad = torch.randn(out_shape, device=device).to(dtype)
                for antialias in (False, True):
                    impls = {"posext": lambda t: resample(t, side, antialias=antialias),
                             "torch": lambda t: _torch_path(t, layout, side, antialias)}
                    if timm_fn is not None:
                        impls["timm"] = lambda t: timm_fn(t, side, antialias)
                    for backward in (False, True):
                        row = {"device": device, "case": name, "dtype": str(dtype).replace("torch.", ""),
                               "aa": antialias, "pass": "fwd+bwd" if backward else "fwd", "out_side": side}
                        aa_label = "AA" if antialias else "no-AA"
                        row["series"] = f"{device} {row['dtype']} {aa_label} {row['pass']}"
                        for impl, fn in impls.items():
                            row[f"{impl}_ms"] = timed_ms(fn, (x,), grad if backward else None, wrt=(0,),
                                                         min_time=min_time)
                        for base in ("torch", "timm"):
                            if row.get(f"{base}_ms"):
                                row[f"x_{base}"] = row[f"{base}_ms"] / row["posext_ms"]
                        rows.append(row)
    return rows


COLUMNS = [("device", "device", "{}"), ("case", "case", "{}"), ("dtype", "dtype", "{}"), ("aa", "AA", "{}"),
           ("pass", "pass", "{}"), ("posext_ms", "posext ms", "{:.3f}"), ("torch_ms", "torch ms", "{:.3f}"),
           ("timm_ms", "timm ms", "{:.3f}"), ("x_torch", "vs torch", "{:.1f}x"),
           ("x_timm", "vs timm", "{:.1f}x")]
LEGEND = [
    ("posext_ms", "posext = posext.resample, bicubic, align_corners=False, the class token passed through"),
    ("torch_ms", ("torch = split -> permute -> F.interpolate -> permute -> cat, float32 upcast for bfloat16 "
                  "(as timm and DINOv2 do)")),
    ("timm_ms", ("timm = timm.layers.resample_abs_pos_embed (_nhwc for the NHWC case); one table per call, "
                 "so no batched rows")),
    ("aa", "AA = antialias; pass: fwd = forward, fwd+bwd = forward + backward to the input"),
    ("x_torch", SPEEDUP_MS),
    (None, MEDIAN_MS),
]
TARGET_VIT_L = {"x_torch": 10.0, "x_timm": 4.0}  # the speedups posext aims for at ViT-L table sizes


def summary(rows):
    """The README's claims: ratio ranges overall and at the ViT-L cases, and how many rows meet the target."""
    out = []
    for key, name in (("x_torch", "the torch path"), ("x_timm", "timm")):
        measured = [r for r in rows if r.get(key)]
        if not measured:
            continue
        slowest = min(measured, key=lambda r: r[key])
        vit_l = [r for r in measured if r["case"].startswith("ViT-L")]
        met = sum(r[key] >= TARGET_VIT_L[key] for r in vit_l)
        out.append(f"vs {name}: {span([r[key] for r in measured], '{:.1f}x')} over all {len(measured)} rows "
                   f"(lowest: {slowest['case']}, {slowest['dtype']}, AA {slowest['aa']}, {slowest['pass']}); "
                   f"at the ViT-L cases {span([r[key] for r in vit_l], '{:.1f}x')}, and the target of >= "
                   f"{TARGET_VIT_L[key]:g}x holds in {met} of {len(vit_l)} rows.")
    return out


def plot(rows, path, title):
    return plots.speedups(path, title, rows, x="case", x_label="case (input table -> output grid)",
                          series_key="series", speedup_keys=[("x_torch", "vs torch"), ("x_timm", "vs timm")],
                          categorical=True)
