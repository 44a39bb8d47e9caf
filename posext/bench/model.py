"""Whole timm ViTs with ``dynamic_img_size=True`` (random weights), batch 1, inference (no_grad): unpatched
timm vs ``posext.integrations.timm.accelerate``. Per resolution: the position-table resize alone (timm: its
``resample_abs_pos_embed`` on every forward; patched: the cache lookup after the first forward), the whole
``_pos_embed`` (resize + class-token concat + add) and the whole forward."""
import statistics
import time

import torch

from ..integrations import timm as posext_timm
from . import plots
from .common import median_seconds, span

WHAT = ("whole timm ViTs (random weights), batch 1, no_grad, unpatched vs "
        "posext.integrations.timm.accelerate: the position-table resize, _pos_embed and the whole forward "
        "per image side")

# (name, patch, embed dim, depth, heads, native image side, image sides)
MODELS = [
    ("ViT-B/16", 16, 768, 12, 12, 224, (224, 288, 384, 448, 512)),
    ("ViT-L/14", 14, 1024, 24, 16, 224, (224, 280, 336, 448, 518)),
]


NATIVE_SIDE = {name: native for name, _, _, _, _, native, _ in MODELS}


def plan(devices, quick=False):
    models = MODELS[:1] if quick else MODELS
    # No estimate: the whole forwards dominate and their cost is not known before the first one runs.
    return len(devices) * sum(len(sides[:2] if quick else sides) for *_, sides in models), None


def _model(patch, dim, depth, heads, native, device):
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    return VisionTransformer(img_size=native, patch_size=patch, embed_dim=dim, depth=depth, num_heads=heads,
                             dynamic_img_size=True).eval().to(device)


def _ms(fn, min_time):
    with torch.no_grad():
        return 1e3 * median_seconds(fn, min_time)


def _forward_ms(fn, repeats):
    """Median of a few whole forwards after one warm-up (a ViT-L forward takes seconds on a small CPU)."""
    with torch.no_grad():
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def run(devices, quick=False):
    rows = []
    models = MODELS[:1] if quick else MODELS
    for device in devices:
        for name, patch, dim, depth, heads, native, sides in models:
            model = _model(patch, dim, depth, heads, native, device)
            for side in (sides[:2] if quick else sides):
                x = torch.randn(1, 3, side, side, device=device)
                with torch.no_grad():
                    tokens = model.patch_embed(x)  # [1, H, W, C]
                grid = (tokens.shape[1], tokens.shape[2])
                row = {"device": device, "model": name, "image": side, "tokens": 1 + grid[0] * grid[1]}
                short, repeats = (0.02, 1) if quick else (0.2, 5 if device == "cuda" else 3)
                for patched in (False, True):
                    tag = "posext" if patched else "timm"
                    if patched:
                        posext_timm.accelerate(model)
                        resize = lambda: posext_timm.resized_pos_embed(model, grid)  # noqa: E731
                    else:
                        from timm.layers import resample_abs_pos_embed

                        resize = lambda: resample_abs_pos_embed(  # noqa: E731
                            model.pos_embed, new_size=grid, old_size=model.patch_embed.grid_size,
                            num_prefix_tokens=model.num_prefix_tokens)
                    row[f"{tag}_resize_ms"] = _ms(resize, short)
                    row[f"{tag}_pos_ms"] = _ms(lambda: model._pos_embed(tokens), short)
                    row[f"{tag}_forward_ms"] = _forward_ms(lambda: model(x), repeats)
                    if patched:
                        posext_timm.unpatch(model)
                row["resize_pct"] = 100.0 * row["posext_resize_ms"] / row["timm_resize_ms"]
                row["pos_pct"] = 100.0 * row["posext_pos_ms"] / row["timm_pos_ms"]
                row["x_forward"] = row["timm_forward_ms"] / row["posext_forward_ms"]
                row["series"] = f"{device} {name}"
                rows.append(row)
    return rows


COLUMNS = [("device", "device", "{}"), ("model", "model", "{}"), ("image", "image", "{}"),
           ("tokens", "tokens", "{}"), ("timm_resize_ms", "timm resize ms", "{:.3f}"),
           ("posext_resize_ms", "posext resize ms", "{:.4f}"),
           ("resize_pct", "resize cost %", "{:.2f}"), ("timm_pos_ms", "timm _pos_embed ms", "{:.3f}"),
           ("posext_pos_ms", "posext _pos_embed ms", "{:.3f}"), ("pos_pct", "_pos_embed cost %", "{:.1f}"),
           ("timm_forward_ms", "timm forward ms", "{:.1f}"),
           ("posext_forward_ms", "posext forward ms", "{:.1f}")]
LEGEND = [
    ("timm_resize_ms", ("timm resize ms = timm's resample_abs_pos_embed of the table to the image's grid, "
                        "which unpatched timm runs in every forward (at the native grid it returns the table "
                        "as is)")),
    ("posext_resize_ms", ("posext resize ms = the same table after accelerate(model): a cache lookup once "
                          "the grid has been seen")),
    ("resize_pct", "resize cost % = posext resize ms / timm resize ms x 100: lower is better for posext"),
    ("timm_pos_ms", ("_pos_embed ms = the model's whole _pos_embed (resize, class-token concat, add); "
                     "_pos_embed cost % = posext _pos_embed ms / timm _pos_embed ms x 100")),
    ("timm_forward_ms", "forward ms = the whole model forward, median of a few runs after one warm-up"),
    (None, "resize and _pos_embed ms = median of torch.utils.benchmark blocked runs"),
]
TARGET_RESIZE_PCT = 5.0  # the cached resize should cost at most this share of timm's per-forward resize


def summary(rows):
    """The README's claims, off the native grid (where timm resizes) and at it (where both run the same
    code)."""
    off = [r for r in rows if r["image"] != NATIVE_SIDE.get(r["model"])]
    native = [r for r in rows if r["image"] == NATIVE_SIDE.get(r["model"])]
    out = []
    if off:
        resize = [r["resize_pct"] for r in off]
        met = "met" if max(resize) <= TARGET_RESIZE_PCT else "not met"
        saved = [r["timm_resize_ms"] - r["posext_resize_ms"] for r in off]
        share = [100.0 * (r["timm_resize_ms"] - r["posext_resize_ms"]) / r["timm_forward_ms"] for r in off]
        out.append(f"Off the native grid the cached resize costs {span(resize, '{:.2f}%')} of timm's "
                   f"per-forward resample (target <= {TARGET_RESIZE_PCT:g}%: {met}) and the whole _pos_embed "
                   f"{span([r['pos_pct'] for r in off], '{:.0f}%')} of timm's (the rest is the class-token "
                   f"concat and the add, the same in both). That saves {span(saved, '{:.1f}')} ms per "
                   f"forward, {span(share, '{:.2f}%')} of timm's whole forward.")
    if off and native:
        noise = [100.0 * abs(r["timm_forward_ms"] - r["posext_forward_ms"])
                 / min(r["timm_forward_ms"], r["posext_forward_ms"]) for r in native]
        if min(noise) > max(share):
            out.append(f"At the native size, where patched and unpatched run the same code, the two forward "
                       f"columns still differ by {span(noise, '{:.0f}%')}: more than the saving, so this run "
                       f"shows no whole-model speedup either way; the saving per forward is the resize "
                       f"column.")
        else:
            out.append(f"At the native size, where both run the same code, the forward columns differ by "
                       f"{span(noise, '{:.0f}%')}, less than the largest saving.")
    return out


def plot(rows, path, title):
    return plots.model_costs(path, title, rows, [
        ("timm_resize_ms", "posext_resize_ms", "position-table resize (timm: every forward; posext: cached)"),
        ("timm_pos_ms", "posext_pos_ms", "whole _pos_embed (resize + class-token concat + add)")],
        NATIVE_SIDE)
