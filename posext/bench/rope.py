"""RoPE on q and k: posext's fused ops against the eager code of the libraries and models that use them.

Part 1, timm: apply_rope_2d (one fused kernel for q and k, angles on the fly) vs timm's eager implementation
at ViT sizes: axial = RotaryEmbeddingCat(in_pixels=False, temperature=100, 'xy') table built once (cached, as
timm's EVA does per model forward) + apply_rot_embed_cat on q and k; mixed = the per-layer table from the
learnable frequencies (get_mixed_freqs, needed every step) + apply_rot_embed_cat. Prefix token split/cat as
timm's EVA attention.

Both parts: float32 and bfloat16, forward and forward+backward (gradients to q and k; timm mixed: and to the
frequencies).

Part 2, models: apply_rope with each model family's recipe (as tests/test_rope_models.py proves equal) vs

* the family's own eager path in HF transformers, from the grid sizes to rotated q and k: Qwen2-VL /
  Qwen2.5-VL / Qwen3-VL vision towers (``get_vision_position_ids`` + ``<Family>VisionRotaryEmbedding`` +
  ``apply_rotary_pos_emb_vision``, packed q and k ``[T, heads, D]`` sliced from the fused qkv projection) and
  DINOv3 (``DINOv3ViTRopePositionEmbedding`` + ``apply_rotary_pos_emb``, q and k ``[1, heads, 5 + grid, D]``
  with the class and 4 register tokens unrotated); posext then builds its positions too (``rope_positions``
  / ``rope_positions_2d``) and rotates with ``apply_rope``;
* a table-driven rotation as flash-attn's and vLLM's rotary fall back to in eager PyTorch: cos and sin
  tables ``[N, R/2]`` in q's dtype built beforehand (not timed; prefix tokens get angle 0), then
  ``x * cos + rotate_half(x) * sin`` on q and k (flash-attn's ``apply_rotary_emb_torch``); posext is timed
  there with its positions also built beforehand (``posext rotate``).

Forward rows of part 2 also time ``torch.clone`` of q and k: one read of each and one write of a result,
the memory floor of any rotation that returns new tensors."""
import os
import statistics

import torch

from .. import rope as posext_rope
from . import plots
from .common import MEDIAN_MS, SPEEDUP_MS, blocked_seconds, installed, span, timed_ms, timing_floor_s
from .rope_models import QWEN, model_paths

WHAT = ("posext.apply_rope_2d vs timm's eager rotation (axial, mixed) and posext.apply_rope vs the HF "
        "Qwen2-VL / Qwen2.5-VL / Qwen3-VL / DINOv3 RoPE paths and a table-driven rotation: q and k, "
        "fp32/bf16, fwd and fwd+bwd")
MODES = ("axial", "mixed")
DTYPES = (torch.float32, torch.bfloat16)

# Part 1: (name, batch, heads, grid side, head_dim); one class token.
CASES = [
    ("ViT-B/16 224", 8, 12, 14, 64),
    ("ViT-L/16 224", 8, 16, 14, 64),
    ("ViT-L/16 384", 4, 16, 24, 64),
    ("ViT-L/14 518", 2, 16, 37, 64),
]

# Part 2: the model families. Qwen-VL: (transformers module, class prefix); grids are (t, h, w) in patches
# before the 2 x 2 merge, packed one after the other. DINOv3: one image, grids (h, w) in 16-pixel patches,
# class + 4 register tokens.
PACKED = [(1, 64, 64), (1, 32, 64), (1, 64, 32)]  # three images, 8192 patches
# (family, grid label, grids, heads, head_dim): the vision towers' own widths (Qwen2-VL / Qwen2.5-VL 1280 =
# 16 x 80, Qwen3-VL 1152 = 16 x 72, DINOv3 ViT-L 1024 = 16 x 64, ViT-7B 4096 = 32 x 128). Qwen2-VL sweeps
# the token counts; the others (Qwen2.5-VL runs Qwen2-VL's rotary code, copied) take a few of them, so that
# the job stays within minutes on a small CPU.
MODEL_CASES = [
    ("Qwen2-VL", "16x16", [(1, 16, 16)], 16, 80),
    ("Qwen2-VL", "32x32", [(1, 32, 32)], 16, 80),
    ("Qwen2-VL", "64x64", [(1, 64, 64)], 16, 80),
    ("Qwen2-VL", "3 images", PACKED, 16, 80),
    ("Qwen2.5-VL", "32x32", [(1, 32, 32)], 16, 80),
    ("Qwen3-VL", "32x32", [(1, 32, 32)], 16, 72),
    ("Qwen3-VL", "3 images", PACKED, 16, 72),
    ("DINOv3 ViT-L", "16x16", [(16, 16)], 16, 64),
    ("DINOv3 ViT-L", "32x32", [(32, 32)], 16, 64),
    ("DINOv3 ViT-L", "64x64", [(64, 64)], 16, 64),
    ("DINOv3 ViT-7B", "32x32", [(32, 32)], 32, 128),
    ("DINOv3 ViT-7B", "64x64", [(64, 64)], 32, 128),
]
TARGET = 2.0  # the speedup over timm's eager rotation posext aims for
MODEL_TARGET = 3.0  # ... and over each model family's eager RoPE path


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


def _model_min_time(quick):
    return 0.02 if quick else 0.1


def _model_cases(quick):
    """Part 2's cases; --quick: the first (smallest) of each family."""
    if not quick:
        return MODEL_CASES
    return [c for i, c in enumerate(MODEL_CASES) if i == 0 or MODEL_CASES[i - 1][0] != c[0]]


def plan(devices, quick=False):
    timm_rows = len(devices) * len(CASES) * len(MODES) * len(DTYPES) * 2
    model_rows = len(devices) * len(_model_cases(quick)) * len(DTYPES) * 2
    # part 2: posext, posext rotate, table, the model path; torch.clone on forward rows
    per_row = 3 + installed("transformers")
    return timm_rows + model_rows, (timing_floor_s(timm_rows * (1 + installed("timm")), _min_time(quick))
                                    + timing_floor_s(model_rows * per_row + model_rows // 2,
                                                     _model_min_time(quick)))


def _dtype_name(dtype):
    return str(dtype).replace("torch.", "")


def _timm_rows(device, quick):
    min_time = _min_time(quick)
    rows = []
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
                    row = {"device": device, "case": name, "mode": mode, "tokens": n, "heads": heads,
                           "head_dim": head_dim, "dtype": _dtype_name(dtype),
                           "pass": "fwd+bwd" if backward else "fwd"}
                    row["series"] = f"{device} {mode} {row['dtype']} {row['pass']}"
                    row["load"] = os.getloadavg()[0]
                    for impl, fn in impls.items():
                        row[f"{impl}_ms"] = timed_ms(fn, (q, k, freqs), grads if backward else None,
                                                     wrt=(0, 1), min_time=min_time)
                    if row.get("timm_ms"):
                        row["x_timm"] = row["timm_ms"] / row["posext_ms"]
                    rows.append(row)
    return rows


# Part 2 times every path of a case in turn, round after round; its ms are medians over the rounds and its
# ratios medians of the per-round ratios, so that a slow spell of the machine lands on both sides of a ratio.
ROUNDS = 3
WARMUP = 2


def _calls(impls, args, grad_outputs):
    """``{name: call()}``: forward under no_grad, or forward + backward to fresh leaves of q and k."""
    if grad_outputs is None:
        def forward(fn):
            def call():
                with torch.no_grad():
                    return fn(*args)
            return call
        return {name: forward(fn) for name, fn in impls.items()}
    leaves = [a.detach().requires_grad_() for a in args]
    return {name: (lambda fn=fn: torch.autograd.grad(fn(*leaves), leaves, grad_outputs))
            for name, fn in impls.items()}


def _rounds(impls, args, grad_outputs, min_time, rounds):
    """``{name: [ms per round]}``, every path warmed up first, then timed in turn each round."""
    calls = _calls(impls, args, grad_outputs)
    for call in calls.values():
        for _ in range(WARMUP):
            call()
    times = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            times[name].append(1e3 * blocked_seconds(call, min_time / rounds))
    return times


def _ratio(times, baseline, reference):
    return statistics.median([b / r for b, r in zip(times[baseline], times[reference])])


def _max_diff(a, b):
    return max((x.float() - y.float()).abs().max().item() for x, y in zip(a, b))


def _model_rows(device, quick):
    min_time, rounds = _model_min_time(quick), 1 if quick else ROUNDS
    rows = []
    for family, label, grids, heads, head_dim in _model_cases(quick):
        mode = "Qwen-VL" if family in QWEN else "DINOv3"
        for dtype in DTYPES:
            paths = model_paths(family, grids, heads, head_dim, dtype, device)
            q, k = paths["q"], paths["k"]
            grads = (torch.randn_like(q), torch.randn_like(k))
            impls = {name: paths[name] for name in ("posext", "rotate", "model", "table")
                     if paths[name] is not None}
            with torch.no_grad():
                reference = paths["posext"](q, k)
                diffs = {name: _max_diff(fn(q, k), reference) for name, fn in impls.items()
                         if name in ("model", "table")}
            del reference
            for backward in (False, True):
                row = {"device": device, "case": f"{family} {label}", "family": family, "mode": mode,
                       "tokens": paths["tokens"],
                       "heads": heads, "head_dim": head_dim, "dtype": _dtype_name(dtype),
                       "pass": "fwd+bwd" if backward else "fwd"}
                row["series"] = f"{device} {mode} {row['dtype']} {row['pass']}"
                row["load"], row["rounds"] = os.getloadavg()[0], rounds
                timed = dict(impls)
                if not backward:  # the memory floor: one read of q and k, one write of a result of each
                    timed["copy"] = lambda q, k: (q.clone(), k.clone())
                times = _rounds(timed, (q, k), grads if backward else None, min_time, rounds)
                for impl, ms in times.items():
                    row[f"{impl}_ms"] = statistics.median(ms)
                if "model" in times:
                    row["x_model"] = _ratio(times, "model", "posext")
                row["x_table"] = _ratio(times, "table", "rotate")
                if not backward:
                    row["x_copy"] = _ratio(times, "rotate", "copy")
                    row["max_diff"] = diffs.get("model")
                    row["table_diff"] = diffs["table"]
                rows.append(row)
    return rows


def run(devices, quick=False):
    rows = []
    for device in devices:
        rows += _timm_rows(device, quick)
    for device in devices:
        rows += _model_rows(device, quick)
    return rows


COLUMNS = [("device", "device", "{}"), ("case", "case", "{}"), ("mode", "mode", "{}"),
           ("tokens", "tokens", "{}"), ("heads", "heads", "{}"), ("head_dim", "D", "{}"),
           ("dtype", "dtype", "{}"), ("pass", "pass", "{}"), ("posext_ms", "posext ms", "{:.3f}"),
           ("timm_ms", "timm ms", "{:.3f}"), ("x_timm", "vs timm", "{:.1f}x"),
           ("model_ms", "model ms", "{:.3f}"), ("x_model", "vs model", "{:.1f}x"),
           ("rotate_ms", "posext rotate ms", "{:.3f}"), ("table_ms", "table ms", "{:.3f}"),
           ("x_table", "vs table", "{:.1f}x"), ("copy_ms", "copy ms", "{:.3f}"),
           ("x_copy", "rotate / copy", "{:.1f}x"), ("max_diff", "max abs diff", "{:.1e}")]
LEGEND = [
    ("x_timm", ("posext (rows with a timm baseline) = posext.apply_rope_2d(q, k, grid, freqs): one fused "
                "kernel for q and k, angles computed on the fly; q, k = [B, H, 1 + grid, 64] views of a "
                "fused qkv projection")),
    ("timm_ms", ("timm axial = RotaryEmbeddingCat(in_pixels=False, temperature=100, 'xy') table built once + "
                 "apply_rot_embed_cat on q and k; timm mixed = get_mixed_freqs from the learnable "
                 "frequencies (every step) + apply_rot_embed_cat; the class token split off and put back as "
                 "timm's EVA does")),
    (("model_ms", "rotate_ms"),
     ("posext (Qwen-VL, DINOv3 rows) = its positions built from the grid sizes + posext.apply_rope with the "
      "family's recipe: Qwen-VL rope_positions(grid_thw, merge_size=2), rope_axial_freqs(D, theta=10000, "
      "first_axis='y'), pair_layout='half', packed q, k [T, heads, D] sliced from the fused qkv with "
      "cu_seqlens; DINOv3 rope_positions_2d(grid, mode='normalized'), rope_axial_freqs(D, theta=100, "
      "scale=2 pi, first_axis='y'), pair_layout='half', q, k [1, heads, 5 + grid, D] views, the class and 4 "
      "register tokens unrotated")),
    ("model_ms", ("model = the family's eager path in HF transformers from the grid sizes: Qwen-VL "
                  "get_vision_position_ids + <Family>VisionRotaryEmbedding + apply_rotary_pos_emb_vision "
                  "(float32 math, rounded to q's dtype); DINOv3 DINOv3ViTRopePositionEmbedding + "
                  "apply_rotary_pos_emb (in q's dtype); the models build the table once per forward and "
                  "rotate in every block")),
    ("rotate_ms", ("posext rotate = posext.apply_rope alone, positions built beforehand; table = "
                   "flash-attn's eager rotary (apply_rotary_emb_torch: repeat cos, sin to [N, R], x * cos + "
                   "rotate_half(x) * sin) on q and k from cos and sin tables [N, R/2] in q's dtype built "
                   "beforehand (not timed; angle 0 on the prefix tokens); vs table = table ms / posext "
                   "rotate ms")),
    ("copy_ms", ("copy = torch.clone of q and k (forward rows): one read of each and one write of a result, "
                 "the floor of any rotation returning new tensors; rotate / copy = posext rotate ms / copy "
                 "ms")),
    ("max_diff", ("max abs diff (printed table, forward rows; the agreement figures below) = largest "
                  "absolute difference of the model path's q and k from posext's")),
    ("pass", "pass: fwd = forward, fwd+bwd = forward + backward to q and k (mixed: and to the frequencies)"),
    (("x_timm", "x_model"), SPEEDUP_MS),
    ("x_timm", "timm rows: " + MEDIAN_MS),
    ("rounds", ("Qwen-VL and DINOv3 rows: ms = median over rounds of torch.utils.benchmark blocked runs (2 "
                "warm-up calls of every path first), every path of a case timed in turn each round; ratios = "
                "medians of the per-round ratios")),
]

# The README's table: one row per case and dtype, forward and forward+backward side by side.
README_COLUMNS = [("case", "case", "{}"), ("mode", "mode", "{}"), ("tokens", "tokens", "{}"),
                  ("heads", "heads", "{}"), ("head_dim", "D", "{}"), ("dtype", "dtype", "{}"),
                  ("posext_ms", "posext ms", "{:.3f}"), ("x_timm", "vs timm", "{:.1f}x"),
                  ("x_model", "vs model", "{:.1f}x"), ("rotate_ms", "posext rotate ms", "{:.3f}"),
                  ("x_table", "vs table", "{:.1f}x")]
README_SINGLE = [("x_copy", "rotate / copy", "{:.1f}x")]  # forward rows only
PAIRED = ", fwd / fwd+bwd"


def readme_table(rows):
    """(columns, table rows, legend lines): the rows of a case and dtype merged into one, each timed column
    as "forward / forward+backward" (the full table, one row per pass, is what the job prints)."""
    keys = ("device", "case", "mode", "dtype")
    merged = {}
    for r in rows:
        merged.setdefault(tuple(r.get(k) for k in keys), {})[r["pass"]] = r
    table = []
    for passes in merged.values():
        fwd, bwd = passes.get("fwd", {}), passes.get("fwd+bwd", {})
        first = fwd or bwd
        out = {k: first.get(k) for k, _, _ in README_COLUMNS[:6]}
        for key, _, fmt in README_COLUMNS[6:]:
            if fwd.get(key) is not None or bwd.get(key) is not None:
                out[key] = " / ".join("" if r.get(key) is None else fmt.format(r[key]) for r in (fwd, bwd))
        for key, _, fmt in README_SINGLE:
            if fwd.get(key) is not None:
                out[key] = fmt.format(fwd[key])
        table.append(out)
    columns = [(key, header + (PAIRED if i >= 6 else ""), "{}") for i, (key, header, _) in
               enumerate(README_COLUMNS)] + [(key, header, "{}") for key, header, _ in README_SINGLE]
    columns = [c for c in columns if any(row.get(c[0]) is not None for row in table)]
    return columns, table, ["each timed cell: forward / forward+backward (the job prints one row per pass)"]


def _lowest(rows, key):
    r = min(rows, key=lambda r: r[key])
    return f"{r['case']}, {r['dtype']}, {r['pass']}"


def summary(rows):
    """The README's claims: the ratio ranges per baseline and how many rows meet the targets."""
    out = []
    measured = [r for r in rows if r.get("x_timm")]
    if measured:
        ranges = "; ".join(f"{mode} {span([r['x_timm'] for r in measured if r['mode'] == mode], '{:.1f}x')}"
                           for mode in MODES if any(r["mode"] == mode for r in measured))
        met = sum(r["x_timm"] >= TARGET for r in measured)
        out.append(f"vs timm: {ranges}; the target of >= {TARGET:g}x holds in {met} of {len(measured)} rows.")
    models = [r for r in rows if r.get("x_model")]
    if models:
        families = list(dict.fromkeys(r["family"] for r in models))
        ranges = "; ".join(f"{f} {span([r['x_model'] for r in models if r['family'] == f], '{:.1f}x')}"
                           for f in families)
        met = sum(r["x_model"] >= MODEL_TARGET for r in models)
        out.append(f"vs each model's eager RoPE path: {ranges}; the target of >= {MODEL_TARGET:g}x holds in "
                   f"{met} of {len(models)} rows (lowest: {_lowest(models, 'x_model')}).")
        missed = [r for r in models if r["x_model"] < MODEL_TARGET]
        if missed and all(r.get("rotate_ms") for r in missed):
            tokens = sorted({r["tokens"] for r in missed})
            share = [100 * (1 - r["rotate_ms"] / r["posext_ms"]) for r in missed]
            floor = [r["x_copy"] for r in missed if r.get("x_copy")]
            where = f"; its rotation alone {span(floor, '{:.1f}x')} the copy floor (forward)" if floor else ""
            out.append(f"The rows below that target have {', '.join(map(str, tokens))} tokens: there "
                       f"building the positions takes {span(share, '{:.0f}%')} of posext's "
                       f"time{where}.")
    tables = [r for r in rows if r.get("x_table")]
    if tables:
        for name, sub in (("forward", [r for r in tables if r["pass"] == "fwd"]),
                          ("forward+backward", [r for r in tables if r["pass"] == "fwd+bwd"])):
            if sub:
                won = sum(r["x_table"] > 1 for r in sub)
                out.append(f"vs the table-driven rotation, {name}: "
                           f"{span([r['x_table'] for r in sub], '{:.1f}x')} (posext faster in {won} of "
                           f"{len(sub)} rows; lowest: {_lowest(sub, 'x_table')}).")
    copies = [r for r in rows if r.get("x_copy")]
    if copies:
        for dtype in dict.fromkeys(r["dtype"] for r in copies):
            sub = [r["x_copy"] for r in copies if r["dtype"] == dtype]
            out.append(f"posext's {dtype} forward rotation takes {span(sub, '{:.1f}x')} the time of one "
                       f"torch.clone of q and k.")
    diffs = [r for r in rows if r.get("max_diff") is not None]
    if diffs:
        worst = ", ".join(f"{dtype} {max(r['max_diff'] for r in diffs if r['dtype'] == dtype):.1e}"
                          for dtype in dict.fromkeys(r["dtype"] for r in diffs))
        out.append(f"The model paths agree with posext within {worst} (largest absolute difference).")
    loads = [r["load"] for r in rows if r.get("load") is not None]
    if loads:
        out.append(f"The 1-minute load average (the job's own threads included) was {span(loads, '{:.1f}')} "
                   f"while these rows were timed; other work on the machine stalls the many small eager "
                   f"kernels more than one fused call, so single ratios are noisy.")
    return out


def plot(rows, path, title):
    # Categorical x: ViT-B/16 224 and ViT-L/16 224 have the same token count and would share an x.
    return plots.speedups(path, title, rows, x=lambda r: f"{r['case']} ({r['tokens']} tokens)",
                          x_label="case", series_key="series",
                          speedup_keys=[("x_timm", "vs timm"), ("x_model", "vs model"),
                                        ("x_table", "vs table")], categorical=True)
