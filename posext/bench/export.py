"""Exported-ONNX resampling of position tables (posext.onnx, one file with a dynamic image size) run by
onnxruntime, against the model's own eager resample (timm's ``resample_abs_pos_embed``: bicubic, antialias),
posext's eager call and timm's function exported by torch.onnx itself (Resize), at three sizes per table."""
import os
import tempfile

import torch

from .common import SPEEDUP_MS, blocked_seconds, installed, span, timing_floor_s

WHAT = ("posext.onnx's exported resample in onnxruntime vs timm's eager resample_abs_pos_embed, posext's "
        "eager resample and timm's function through torch.onnx (Resize); bicubic antialias, float32")

# (name, prefix rows, stored grid side, C, target grids)
TABLES = [
    ("ViT-B/16 224", 1, 14, 768, [(24, 24), (32, 24), (10, 10)]),
    ("ViT-L/14 518", 1, 37, 1024, [(16, 16), (32, 32), (46, 34)]),
]
QUICK = 1


def _min_time(quick):
    return 0.05 if quick else 0.4


def _tables(quick):
    return TABLES[:QUICK] if quick else TABLES


def plan(devices, quick=False):
    if "cpu" not in devices:
        return 0, None
    rows = sum(len(t[4]) for t in _tables(quick))
    return rows, timing_floor_s(rows * 4, _min_time(quick))


class _Resize(torch.nn.Module):
    """The table resampled to the grid of ``feat`` ([1, h, w, 1]: its shape carries the size), by ``fn``."""

    def __init__(self, table, fn):
        super().__init__()
        self.table, self.fn = table, fn

    def forward(self, feat):
        return self.fn(self.table, (feat.shape[1], feat.shape[2]))


def _session(module, export, path, threads):
    """``module`` exported by ``export`` with a dynamic (h, w), opened in onnxruntime."""
    import onnxruntime

    h, w = torch.export.Dim("h", min=1, max=128), torch.export.Dim("w", min=1, max=128)
    export(module, path, {"feat": {1: h, 2: w}})
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _posext_export(module, path, shapes):
    import posext.onnx

    posext.onnx.export(module, (torch.zeros(1, 20, 12, 1),), dynamic_shapes=shapes, verbose=False).save(path)


def _torch_export(module, path, shapes):
    torch.onnx.export(module, (torch.zeros(1, 20, 12, 1),), dynamo=True, dynamic_shapes=shapes,
                      verbose=False).save(path)


def run(devices, quick=False):
    if "cpu" not in devices or not all(installed(m) for m in ("onnxruntime", "onnxscript", "timm")):
        return []
    from timm.layers import resample_abs_pos_embed

    import posext

    min_time, threads = _min_time(quick), torch.get_num_threads()
    rows = []
    folder = tempfile.mkdtemp(prefix="posext-bench-export-")
    for name, prefix, side, channels, grids in _tables(quick):
        table = torch.randn(1, prefix + side * side, channels, generator=torch.Generator().manual_seed(0))

        def timm_fn(t, size):
            return resample_abs_pos_embed(t, list(size), num_prefix_tokens=prefix)

        def posext_fn(t, size):
            return posext.resample(t, size, num_prefix_tokens=prefix, mode="bicubic", antialias=True)

        sessions = {"onnx": _session(_Resize(table, posext_fn).eval(), _posext_export,
                                     os.path.join(folder, "posext.onnx"), threads)}
        try:
            sessions["timm_onnx"] = _session(_Resize(table, timm_fn).eval(), _torch_export,
                                             os.path.join(folder, "timm.onnx"), threads)
        except Exception as exc:  # noqa: BLE001 - a baseline that does not export is a finding, not a crash
            print(f"  timm's resample_abs_pos_embed did not export: {type(exc).__name__}")
        for grid in grids:
            feat = torch.zeros(1, *grid, 1)
            feeds = {s: {sess.get_inputs()[0].name: feat.numpy()} for s, sess in sessions.items()}
            with torch.no_grad():
                eager = timm_fn(table, grid)
                row = {"table": name, "C": channels, "grid": f"{grid[0]}x{grid[1]}",
                       "eager_ms": 1e3 * blocked_seconds(lambda: timm_fn(table, grid), min_time),
                       "posext_ms": 1e3 * blocked_seconds(lambda: posext_fn(table, grid), min_time)}
            for key, sess in sessions.items():
                out = torch.from_numpy(sess.run(None, feeds[key])[0])
                row[f"{key}_diff"] = (out - eager).abs().max().item()
                row[f"{key}_ms"] = 1e3 * blocked_seconds(lambda: sess.run(None, feeds[key]), min_time)
            row["x_eager"] = row["eager_ms"] / row["onnx_ms"]
            row["x_posext"] = row["posext_ms"] / row["onnx_ms"]
            if "timm_onnx_ms" in row:
                row["x_timm_onnx"] = row["timm_onnx_ms"] / row["onnx_ms"]
            rows.append(row)
    return rows


COLUMNS = [("table", "table", "{}"), ("C", "C", "{}"), ("grid", "grid", "{}"),
           ("onnx_ms", "posext ONNX ms", "{:.3f}"), ("eager_ms", "timm eager ms", "{:.3f}"),
           ("posext_ms", "posext eager ms", "{:.3f}"), ("timm_onnx_ms", "timm ONNX ms", "{:.3f}"),
           ("x_eager", "vs timm eager", "{:.2f}x"), ("x_posext", "vs posext eager", "{:.2f}x"),
           ("x_timm_onnx", "vs timm ONNX", "{:.2f}x"), ("onnx_diff", "posext ONNX diff", "{:.1e}"),
           ("timm_onnx_diff", "timm ONNX diff", "{:.1e}")]
LEGEND = [
    ("onnx_ms", "posext ONNX = posext.resample(table, (h, w), bicubic, antialias) exported once by "
                "posext.onnx.export with a dynamic (h, w), run by onnxruntime (CPU, torch's thread count)"),
    ("eager_ms", "timm eager = timm.layers.resample_abs_pos_embed (bicubic, antialias, the model's own "
                 "resample); posext eager = posext.resample with the same numerics"),
    ("timm_onnx_ms", "timm ONNX = timm's function exported by torch.onnx.export(dynamo=True) itself (an ONNX "
                     "Resize node), dynamic (h, w), same runtime"),
    (("x_eager", "x_posext", "x_timm_onnx"), SPEEDUP_MS.replace("posext ms", "posext ONNX ms")),
    (("onnx_diff", "timm_onnx_diff"), "diff = largest absolute difference from timm's eager result"),
    (None, "ms = median of torch.utils.benchmark blocked runs; table [1, 1 + side^2, C] of N(0, 1) values"),
]


def summary(rows):
    def times(key):
        return span([1 / r[key] for r in rows], "{:.2f}x")

    lines = [f"posext's exported resample in onnxruntime takes {times('x_eager')} the time of timm's eager "
             f"resample and {times('x_posext')} that of posext's eager call over {len(rows)} sizes; it "
             f"agrees with timm within {max(r['onnx_diff'] for r in rows):.1e}."]
    if all("timm_onnx_ms" in r for r in rows):
        lines.append(f"It runs in {times('x_timm_onnx')} the time of timm's function exported by torch.onnx "
                     f"(Resize), which agrees "
                     f"with timm's eager result within {max(r['timm_onnx_diff'] for r in rows):.1e}.")
    return lines


plot = None
