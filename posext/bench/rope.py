"""apply_rope_2d (one fused kernel for q and k, angles on the fly) vs timm's eager implementation at ViT
sizes: axial = RotaryEmbeddingCat(in_pixels=False, temperature=100, 'xy') table built once (cached, as timm's
EVA does per model forward) + apply_rot_embed_cat on q and k; mixed = the per-layer table from the learnable
frequencies (get_mixed_freqs, needed every step) + apply_rot_embed_cat. Prefix token split/cat as timm's EVA
attention. float32 and bfloat16, forward and forward+backward (mixed: incl. the frequency gradient)."""
import torch

from .. import rope as posext_rope
from . import plots
from .common import MEDIAN_MS, SPEEDUP_MS, installed, span, timed_ms, timing_floor_s

WHAT = "posext.apply_rope_2d on q and k vs timm's eager rotation: axial and mixed, fp32/bf16, fwd and fwd+bwd"
MODES = ("axial", "mixed")
DTYPES = (torch.float32, torch.bfloat16)

# (name, batch, heads, grid side, head_dim); one class token.
CASES = [
    ("ViT-B/16 224", 8, 12, 14, 64),
    ("ViT-L/16 224", 8, 16, 14, 64),
    ("ViT-L/16 384", 4, 16, 24, 64),
    ("ViT-L/14 518", 2, 16, 37, 64),
]


def _timm_fns(mode, heads, side, head_dim, freqs, device):
    try:
        from timm.layers import RotaryEmbeddingCat, apply_rot_embed_cat
        from timm.layers.pos_embed_sincos import get_mixed_freqs, get_mixed_grid
    except ImportError:
        return None

    def apply(q, k, emb):
        q = torch.cat([q[:, :, :1], apply_rot_embed_cat(q[:, :, 1:], emb)], dim=2)
        k = torch.cat([k[:, :, :1], apply_rot_embed_cat(k[:, :, 1:], emb)], dim=2)
        return q, k

    if mode == "axial":
        emb = RotaryEmbeddingCat(head_dim, in_pixels=False, temperature=100, grid_indexing="xy").to(device)
        table = emb.get_embed((side, side))
        return lambda q, k, f: apply(q, k, table)
    t_x, t_y = get_mixed_grid([side, side], grid_indexing="xy", device=device)
    return lambda q, k, f: apply(q, k, get_mixed_freqs(f, t_x, t_y))


def _min_time(quick):
    return 0.02 if quick else 0.25


def plan(devices, quick=False):
    rows = len(devices) * len(CASES) * len(MODES) * len(DTYPES) * 2
    return rows, timing_floor_s(rows * (1 + installed("timm")), _min_time(quick))


def run(devices, quick=False):
    min_time = _min_time(quick)
    rows = []
    for device in devices:
        for name, batch, heads, side, head_dim in CASES:
            n = 1 + side * side
            for mode in MODES:
                if mode == "axial":
                    freqs = posext_rope.rope_axial_freqs(head_dim, theta=100.0, device=device)
                else:
                    freqs = posext_rope.rope_mixed_freqs(head_dim, heads, theta=10.0,
                                                         device=device).requires_grad_()
                timm_fn = _timm_fns(mode, heads, side, head_dim, freqs, device)
                for dtype in DTYPES:
                    # q, k as a ViT makes them: slices of the fused qkv projection, [B, H, N, D] views
                    qkv = torch.randn(batch, n, 3, heads, head_dim,
                                      device=device).to(dtype).permute(2, 0, 3, 1, 4)
                    q, k = qkv[0], qkv[1]
                    grads = (torch.randn_like(q), torch.randn_like(k))
                    impls = {"posext": lambda q, k, f: posext_rope.apply_rope_2d(q, k, (side, side), f)}
                    if timm_fn is not None:
                        impls["timm"] = timm_fn
                    for backward in (False, True):
                        row = {"device": device, "case": name, "mode": mode,
                               "dtype": str(dtype).replace("torch.", ""),
                               "pass": "fwd+bwd" if backward else "fwd", "tokens": n}
                        row["series"] = f"{device} {mode} {row['dtype']} {row['pass']}"
                        for impl, fn in impls.items():
                            row[f"{impl}_ms"] = timed_ms(fn, (q, k, freqs), grads if backward else None,
                                                         wrt=(0, 1), min_time=min_time)
                        if row.get("timm_ms"):
                            row["x_timm"] = row["timm_ms"] / row["posext_ms"]
                        rows.append(row)
    return rows


COLUMNS = [("device", "device", "{}"), ("case", "case", "{}"), ("mode", "mode", "{}"),
           ("dtype", "dtype", "{}"), ("pass", "pass", "{}"), ("posext_ms", "posext ms", "{:.3f}"),
           ("timm_ms", "timm ms", "{:.3f}"), ("x_timm", "vs timm", "{:.1f}x")]
LEGEND = [
    ("posext_ms", ("posext = posext.apply_rope_2d(q, k, grid, freqs): one fused kernel for q and k, angles "
                   "computed on the fly; q, k = [B, H, 1 + grid, 64] views of a fused qkv projection")),
    ("timm_ms", ("timm axial = RotaryEmbeddingCat(in_pixels=False, temperature=100, 'xy') table built once + "
                 "apply_rot_embed_cat on q and k; timm mixed = get_mixed_freqs from the learnable "
                 "frequencies (every step) + apply_rot_embed_cat; the class token split off and put back as "
                 "timm's EVA does")),
    ("pass", "pass: fwd = forward, fwd+bwd = forward + backward to q and k (mixed: and to the frequencies)"),
    ("x_timm", SPEEDUP_MS),
    (None, MEDIAN_MS),
]
TARGET = 2.0  # the speedup over timm's eager rotation posext aims for


def summary(rows):
    """The README's claims: the ratio range per mode and how many rows meet the target."""
    measured = [r for r in rows if r.get("x_timm")]
    if not measured:
        return []
    ranges = "; ".join(f"{mode} {span([r['x_timm'] for r in measured if r['mode'] == mode], '{:.1f}x')}"
                       for mode in MODES if any(r["mode"] == mode for r in measured))
    met = sum(r["x_timm"] >= TARGET for r in measured)
    return [f"vs timm: {ranges}; the target of >= {TARGET:g}x holds in {met} of {len(measured)} rows."]


def plot(rows, path, title):
    # Categorical x: ViT-B/16 224 and ViT-L/16 224 have the same token count and would share an x.
    return plots.speedups(path, title, rows, x=lambda r: f"{r['case']} ({r['tokens']} tokens)",
                          x_label="case", series_key="series", speedup_keys=[("x_timm", "vs timm")],
                          categorical=True)
