"""sincos_2d vs open_clip's NumPy get_2d_sincos_pos_embed (+ conversion to a float32 tensor, as models use it)
and timm's build_sincos2d_pos_embed, float32 output, MAE / timm layouts."""
import torch

from .. import sincos_2d
from ..sincos import CONVENTIONS, _sincos_2d_torch
from .common import median_seconds

DIMS = (768, 1024, 1536)
GRIDS = (14, 37, 64)


def run(devices, quick=False):
    try:
        from open_clip.pos_embed import get_2d_sincos_pos_embed
    except ImportError:
        get_2d_sincos_pos_embed = None
    try:
        from timm.layers.pos_embed_sincos import build_sincos2d_pos_embed
    except ImportError:
        build_sincos2d_pos_embed = None
    min_time = 0.05 if quick else 0.4
    mae = CONVENTIONS["mae"]
    rows = []
    for device in devices:
        for dim in DIMS:
            for grid in GRIDS:
                row = {"device": device, "dim": dim, "grid": grid}
                row["posext_ms"] = 1e3 * median_seconds(lambda: sincos_2d(dim, grid, device=device), min_time)
                row["fallback_ms"] = 1e3 * median_seconds(lambda: _sincos_2d_torch(
                    dim, grid, grid, 0, 1e4, mae.band_codes, 0, torch.float32, torch.device(device)), min_time)
                if build_sincos2d_pos_embed is not None:
                    row["timm_ms"] = 1e3 * median_seconds(
                        lambda: build_sincos2d_pos_embed([grid, grid], dim=dim, device=device), min_time)
                if get_2d_sincos_pos_embed is not None:
                    row["numpy_ms"] = 1e3 * median_seconds(
                        lambda: torch.from_numpy(get_2d_sincos_pos_embed(dim, grid)).float().to(device), min_time)
                for base in ("timm", "numpy", "fallback"):
                    if row.get(f"{base}_ms"):
                        row[f"x_{base}"] = row[f"{base}_ms"] / row["posext_ms"]
                rows.append(row)
    return rows


COLUMNS = [("device", "device", "{}"), ("dim", "D", "{}"), ("grid", "grid", "{0}x{0}"),
           ("posext_ms", "posext ms", "{:.3f}"), ("timm_ms", "timm ms", "{:.3f}"), ("numpy_ms", "numpy ms", "{:.3f}"),
           ("fallback_ms", "fallback ms", "{:.3f}"), ("x_timm", "vs timm", "{:.1f}x"),
           ("x_numpy", "vs numpy", "{:.1f}x"), ("x_fallback", "vs fallback", "{:.1f}x")]
PLOT = dict(x_key="grid", x_label="grid side (tokens per side)", series_key="dim",
            speedup_keys=[("x_timm", "vs timm"), ("x_numpy", "vs open_clip numpy")])
