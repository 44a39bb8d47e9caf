"""apply_rope_2d (one fused kernel for q and k, angles on the fly) vs timm's eager implementation at ViT sizes:
axial = RotaryEmbeddingCat(in_pixels=False, temperature=100, 'xy') table built once (cached, as timm's EVA does
per model forward) + apply_rot_embed_cat on q and k; mixed = the per-layer table from the learnable
frequencies (get_mixed_freqs, needed every step) + apply_rot_embed_cat. Prefix token split/cat as timm's
EVA attention. float32 and bfloat16, forward and forward+backward (mixed: incl. the frequency gradient)."""
import torch

from .. import rope as posext_rope
from .common import timed_ms

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


def run(devices, quick=False):
    min_time = 0.02 if quick else 0.25
    rows = []
    for device in devices:
        for name, batch, heads, side, head_dim in CASES:
            n = 1 + side * side
            for mode in ("axial", "mixed"):
                if mode == "axial":
                    freqs = posext_rope.rope_axial_freqs(head_dim, theta=100.0, device=device)
                else:
                    freqs = posext_rope.rope_mixed_freqs(head_dim, heads, theta=10.0, device=device).requires_grad_()
                timm_fn = _timm_fns(mode, heads, side, head_dim, freqs, device)
                for dtype in (torch.float32, torch.bfloat16):
                    # q, k as a ViT makes them: slices of the fused qkv projection, [B, H, N, D] views
                    qkv = torch.randn(batch, n, 3, heads, head_dim, device=device).to(dtype).permute(2, 0, 3, 1, 4)
                    q, k = qkv[0], qkv[1]
                    grads = (torch.randn_like(q), torch.randn_like(k))
                    impls = {"posext": lambda q, k, f: posext_rope.apply_rope_2d(q, k, (side, side), f)}
                    if timm_fn is not None:
                        impls["timm"] = timm_fn
                    for backward in (False, True):
                        row = {"device": device, "case": name, "mode": mode, "dtype": str(dtype).replace("torch.", ""),
                               "pass": "fwd+bwd" if backward else "fwd", "tokens": n}
                        row["series"] = f"{device} {mode} {row['dtype']} {row['pass']}"
                        for impl, fn in impls.items():
                            row[f"{impl}_ms"] = timed_ms(fn, (q, k, freqs), grads if backward else None,
                                                         wrt=(0, 1), min_time=min_time)
                        if row.get("timm_ms"):
                            row["x_timm"] = row["timm_ms"] / row["posext_ms"]
                        rows.append(row)
    return rows


COLUMNS = [("device", "device", "{}"), ("case", "case", "{}"), ("mode", "mode", "{}"), ("dtype", "dtype", "{}"),
           ("pass", "pass", "{}"), ("posext_ms", "posext ms", "{:.3f}"), ("timm_ms", "timm ms", "{:.3f}"),
           ("x_timm", "vs timm", "{:.1f}x")]
PLOT = dict(x_key="tokens", x_label="tokens N (1 + grid)", series_key="series",
            speedup_keys=[("x_timm", "vs timm eager")], connect=False)
