"""resample vs the hand-rolled permute -> F.interpolate -> permute -> cat path and timm's resample_abs_pos_embed
(same antialias setting; bicubic, align_corners=False), fp32 and bf16, forward and forward+backward."""
import torch

from .. import resample
from ..resample import _resample_torch
from .common import timed_ms

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


def run(devices, quick=False):
    min_time = 0.02 if quick else 0.25
    rows = []
    for device in devices:
        for name, shape, layout, side in CASES:
            timm_fn = _timm_fn(layout, shape[0])
            for dtype in (torch.float32, torch.bfloat16):
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
                        row["series"] = f"{device} {row['dtype']} {'AA' if antialias else 'no-AA'} {row['pass']}"
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
           ("timm_ms", "timm ms", "{:.3f}"), ("x_torch", "vs torch", "{:.1f}x"), ("x_timm", "vs timm", "{:.1f}x")]
PLOT = dict(x_key="out_side", x_label="output grid side (tokens per side)", series_key="series",
            speedup_keys=[("x_torch", "vs permute+F.interpolate")], connect=False)
