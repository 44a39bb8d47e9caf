"""factorized_pos_embed (one fused gather-add) vs the eager PyTorch NaViT path with precomputed index tensors:
sum `x + table_y[rows][None] + table_x[cols][None]`, concat `x + cat(table_y[rows], table_x[cols])[None]`
and the Pix2struct 2-D table `x + table[rows, cols][None]`, at ViT-B/L sizes (batch 1 and 32) and on a packed
NaViT sequence of 8 images of mixed sizes. float32 and bfloat16, forward and forward+backward (gradients to x
and the tables). Tables have 64 rows per axis (NaViT's maximum grid side), no prefix tokens.

Forward rows also time `x + 1`: one read of x and one write of the result, the memory floor of any x + term
op. With a batch the eager path is one small gather plus that same broadcast add, so no fused kernel can be
much faster than eager there; the fused op wins where eager materialises per-token tables (batch 1, sum
mode)."""
import torch

from .. import factorized_pos_embed
from . import plots
from .common import MEDIAN_MS, SPEEDUP_MS, span, timed_ms, timing_floor_s

WHAT = ("posext.factorized_pos_embed vs eager indexing: sum / concat / 2-D table, batch 1, 32 and packed, "
        "fp32/bf16, fwd and fwd+bwd, plus the x + 1 memory floor")

TABLE_SIDE = 64
PACKED_SIZES = [(37, 37), (14, 14), (16, 16), (24, 9), (8, 32), (20, 20), (5, 13), (1, 1)]

# (name, batch (None: packed [T, C]), grid sizes, channels)
CASES = [
    ("ViT-B/16 224 (14x14)", 1, [(14, 14)], 768),
    ("ViT-B/16 224 (14x14)", 32, [(14, 14)], 768),
    ("ViT-L/16 256 (16x16)", 1, [(16, 16)], 1024),
    ("ViT-L/16 256 (16x16)", 32, [(16, 16)], 1024),
    ("ViT-L/14 518 (37x37)", 1, [(37, 37)], 1024),
    ("ViT-L/14 518 (37x37)", 32, [(37, 37)], 1024),
    ("NaViT packed 8 images", None, PACKED_SIZES, 768),
]
MODES = ("sum", "concat", "2d")
DTYPES = (torch.float32, torch.bfloat16)


def _indices(sizes, device):
    """Row-major (y, x) of every token, image after image: what an eager NaViT precomputes once."""
    rows, cols = [], []
    for h, w in sizes:
        i = torch.arange(h * w, device=device)
        rows.append(torch.div(i, w, rounding_mode="floor"))
        cols.append(i % w)
    return torch.cat(rows), torch.cat(cols)


def _tables(mode, channels, dtype, device):
    if mode == "2d":
        return torch.randn(TABLE_SIDE, TABLE_SIDE, channels, device=device).to(dtype), None
    cy = channels if mode == "sum" else channels // 2
    cx = channels if mode == "sum" else channels - cy
    return (torch.randn(TABLE_SIDE, cy, device=device).to(dtype),
            torch.randn(TABLE_SIDE, cx, device=device).to(dtype))


def _impls(mode, batch, sizes, rows, cols):
    kw = dict(grid_size=sizes[0]) if batch is not None else dict(grid_sizes=sizes)
    if mode != "2d":
        kw["combine"] = mode

    def posext_fn(x, ty, tx):
        return factorized_pos_embed(x, ty, tx, **kw)

    lead = (lambda e: e[None]) if batch is not None else (lambda e: e)
    if mode == "sum":
        def torch_fn(x, ty, tx):
            return x + lead(ty[rows]) + lead(tx[cols])
    elif mode == "concat":
        def torch_fn(x, ty, tx):
            return x + lead(torch.cat([ty[rows], tx[cols]], dim=-1))
    else:
        def torch_fn(x, ty, tx):
            return x + lead(ty[rows, cols])
    return {"posext": posext_fn, "torch": torch_fn}


def _min_time(quick):
    return 0.02 if quick else 0.25


def plan(devices, quick=False):
    rows = len(devices) * len(CASES) * len(DTYPES) * len(MODES) * 2
    return rows, timing_floor_s(rows * 2 + rows // 2, _min_time(quick))  # posext, torch; x + 1 on fwd rows


def run(devices, quick=False):
    min_time = _min_time(quick)
    rows_out = []
    for device in devices:
        for name, batch, sizes, channels in CASES:
            rows, cols = _indices(sizes, device)
            n_tokens = rows.numel()
            shape = (batch, n_tokens, channels) if batch is not None else (n_tokens, channels)
            for dtype in DTYPES:
                x = torch.randn(shape, device=device).to(dtype)
                grad = torch.randn(shape, device=device).to(dtype)
                for mode in MODES:
                    ty, tx = _tables(mode, channels, dtype, device)
                    impls = _impls(mode, batch, sizes, rows, cols)
                    for backward in (False, True):
                        row = {"device": device, "case": name,
                               "batch": batch if batch is not None else "packed", "mode": mode,
                               "dtype": str(dtype).replace("torch.", ""),
                               "pass": "fwd+bwd" if backward else "fwd",
                               "tokens": n_tokens * (batch if batch is not None else 1)}
                        row["series"] = f"{device} {mode} {row['dtype']} {row['pass']}"
                        for impl, fn in impls.items():
                            row[f"{impl}_ms"] = timed_ms(fn, (x, ty, tx), grad if backward else None,
                                                         wrt=(0, 1, 2), min_time=min_time)
                        if not backward:  # the memory floor: one read of x and one write of out, no lookup
                            row["floor_ms"] = timed_ms(lambda x, ty, tx: x + 1, (x, ty, tx), None, wrt=(0,),
                                                       min_time=min_time)
                        row["x_torch"] = row["torch_ms"] / row["posext_ms"]
                        rows_out.append(row)
    return rows_out


COLUMNS = [("device", "device", "{}"), ("case", "case", "{}"), ("batch", "batch", "{}"),
           ("mode", "mode", "{}"), ("dtype", "dtype", "{}"), ("pass", "pass", "{}"),
           ("tokens", "tokens", "{}"),
           ("posext_ms", "posext ms", "{:.3f}"), ("torch_ms", "torch ms", "{:.3f}"),
           ("floor_ms", "x + 1 ms", "{:.3f}"),
           ("x_torch", "vs torch", "{:.1f}x")]
LEGEND = [
    ("posext_ms", "posext = posext.factorized_pos_embed: one fused gather-add; tables of 64 rows per axis"),
    ("torch_ms", ("torch = eager indexing with precomputed index tensors: sum x + table_y[rows][None] + "
                  "table_x[cols][None]; concat x + cat(table_y[rows], table_x[cols])[None]; 2d x + "
                  "table[rows, cols][None]")),
    ("batch", "batch packed = one NaViT sequence of 8 images of mixed sizes; tokens = batch x sequence"),
    ("floor_ms", ("x + 1 ms = one read of x and one write of the result (forward rows): the memory floor of "
                  "any x + term op")),
    ("x_torch", SPEEDUP_MS),
    (None, MEDIAN_MS),
]


def _ranges(rows, fn):
    values = [fn(r) for r in rows]
    return span(values, "{:.1f}x") if values else None


def readme_table(rows):
    """Per batch kind and mode, the ratio ranges over dtypes and cases (the full table has 84 rows on one
    device): (columns, table rows, legend lines for the derived columns)."""
    columns = [("batch", "batch", "{}"), ("mode", "mode", "{}"), ("fwd", "vs torch, fwd", "{}"),
               ("bwd", "vs torch, fwd+bwd", "{}"), ("posext_floor", "posext ms / x + 1 ms", "{}"),
               ("torch_floor", "torch ms / x + 1 ms", "{}")]
    table = []
    for batch in dict.fromkeys(r["batch"] for r in rows):
        for mode in MODES:
            sub = [r for r in rows if r["batch"] == batch and r["mode"] == mode]
            fwd = [r for r in sub if r["pass"] == "fwd"]
            table.append({"batch": batch, "mode": mode, "fwd": _ranges(fwd, lambda r: r["x_torch"]),
                          "bwd": _ranges([r for r in sub if r["pass"] == "fwd+bwd"], lambda r: r["x_torch"]),
                          "posext_floor": _ranges(fwd, lambda r: r["posext_ms"] / r["floor_ms"]),
                          "torch_floor": _ranges(fwd, lambda r: r["torch_ms"] / r["floor_ms"])})
    legend = ["each cell: lowest-highest over the cases and dtypes of that batch kind and mode",
              "X ms / x + 1 ms: forward time over the memory floor; 1.0x = at the floor"]
    return columns, table, legend


def summary(rows):
    """The README's claims: the ceiling the memory floor sets at large batches, and the sum-mode gains."""
    out = []
    batched = [r for r in rows if isinstance(r["batch"], int) and r["batch"] > 1 and r.get("floor_ms")]
    if batched:
        eager = [r["torch_ms"] / r["floor_ms"] for r in batched]
        fused = [r["posext_ms"] / r["floor_ms"] for r in batched]
        batches = ", ".join(f"batch {b}" for b in dict.fromkeys(r["batch"] for r in batched))
        out.append(f"At {batches} the eager forward takes {span(eager, '{:.1f}x')} the x + 1 floor, so no "
                   f"kernel that reads x and writes the result can be more than {max(eager):.1f}x faster "
                   f"than eager there; posext's forward takes {span(fused, '{:.1f}x')} the floor.")
    gains = [r["x_torch"] for r in rows if r["mode"] == "sum" and (r["batch"] == 1 or r["batch"] == "packed")]
    if gains:
        out.append(f"Sum mode at batch 1 and packed, where eager materialises per-token tables: "
                   f"{span(gains, '{:.1f}x')}.")
    return out


def plot(rows, path, title):
    # Categorical x per (case, batch): batch 1 and 32 of one model, and all modes, share a token count.
    return plots.speedups(path, title, rows, x=lambda r: f"{r['case']}, batch {r['batch']}", x_label="case",
                          series_key="series", speedup_keys=[("x_torch", "vs torch")], categorical=True)
