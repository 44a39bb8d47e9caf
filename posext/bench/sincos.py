"""sincos_2d vs open_clip's NumPy get_2d_sincos_pos_embed (+ conversion to a float32 tensor, as models use it)
and timm's build_sincos2d_pos_embed, float32 output, MAE / timm layouts."""
import torch

from .. import sincos_2d
from ..sincos import CONVENTIONS, _sincos_2d_torch
from . import plots
from .common import SPEEDUP_MS, installed, median_seconds, span, timing_floor_s

WHAT = "posext.sincos_2d vs timm, open_clip's NumPy path and posext's own PyTorch fallback, float32 tables"

DIMS = (768, 1024, 1536)
GRIDS = (14, 37, 64)


def _min_time(quick):
    return 0.05 if quick else 0.4


def plan(devices, quick=False):
    rows = len(devices) * len(DIMS) * len(GRIDS)
    impls = 2 + installed("timm") + installed("open_clip")
    return rows, timing_floor_s(rows * impls, _min_time(quick))


def run(devices, quick=False):
    try:
        from open_clip.pos_embed import get_2d_sincos_pos_embed
    except ImportError:
        get_2d_sincos_pos_embed = None
    try:
        from timm.layers.pos_embed_sincos import build_sincos2d_pos_embed
    except ImportError:
        build_sincos2d_pos_embed = None
    min_time = _min_time(quick)
    mae = CONVENTIONS["mae"]
    rows = []
    for device in devices:
        for dim in DIMS:
            for grid in GRIDS:
                row = {"device": device, "dim": dim, "grid": grid}
                row["posext_ms"] = 1e3 * median_seconds(lambda: sincos_2d(dim, grid, device=device), min_time)
                row["fallback_ms"] = 1e3 * median_seconds(lambda: _sincos_2d_torch(
                    dim, grid, grid, 0, 1e4, mae.band_codes, 0, torch.float32, torch.device(device)),
                    min_time)
                if build_sincos2d_pos_embed is not None:
                    row["timm_ms"] = 1e3 * median_seconds(
                        lambda: build_sincos2d_pos_embed([grid, grid], dim=dim, device=device), min_time)
                if get_2d_sincos_pos_embed is not None:
                    row["numpy_ms"] = 1e3 * median_seconds(
                        lambda: torch.from_numpy(get_2d_sincos_pos_embed(dim, grid)).float().to(device),
                        min_time)
                for base in ("timm", "numpy", "fallback"):
                    if row.get(f"{base}_ms"):
                        row[f"x_{base}"] = row[f"{base}_ms"] / row["posext_ms"]
                rows.append(row)
    return rows


COLUMNS = [("device", "device", "{}"), ("dim", "D", "{}"), ("grid", "grid", "{0}x{0}"),
           ("posext_ms", "posext ms", "{:.3f}"), ("timm_ms", "timm ms", "{:.3f}"),
           ("numpy_ms", "numpy ms", "{:.3f}"), ("fallback_ms", "fallback ms", "{:.3f}"),
           ("x_timm", "vs timm", "{:.1f}x"), ("x_numpy", "vs numpy", "{:.1f}x"),
           ("x_fallback", "vs fallback", "{:.1f}x")]
LEGEND = [
    ("posext_ms", "posext = posext.sincos_2d(D, grid): the MAE channel layout, no prefix rows, float32"),
    ("timm_ms", "timm = timm.layers.pos_embed_sincos.build_sincos2d_pos_embed"),
    ("numpy_ms", ("numpy = open_clip.pos_embed.get_2d_sincos_pos_embed (NumPy) + "
                  "torch.from_numpy(...).float(), as models use it")),
    ("fallback_ms", "fallback = posext's own pure-PyTorch formula, what runs without the compiled extension"),
    (("x_timm", "x_numpy", "x_fallback"), SPEEDUP_MS),
    (None, "ms = median of torch.utils.benchmark blocked runs of building the whole table"),
]
BASELINES = (("x_timm", "timm"), ("x_numpy", "the NumPy path"), ("x_fallback", "posext's PyTorch fallback"))


def summary(rows):
    """The README's claim: how much faster posext is than each baseline over these sizes."""
    parts = [f"{span([r[key] for r in rows if r.get(key)], '{:.1f}x')} faster than {name}"
             for key, name in BASELINES if any(r.get(key) for r in rows)]
    listed = ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]
    return [f"Over these {len(rows)} sizes posext builds the table {listed}."]


def plot(rows, path, title):
    return plots.speedups(path, title, rows, x="grid", x_label="grid side (tokens per side)",
                          series_key=lambda r: f"D={r['dim']}",
                          speedup_keys=[("x_timm", "vs timm"), ("x_numpy", "vs numpy"),
                                        ("x_fallback", "vs fallback")])
