"""Every posext op against the path it replaces, timed on the device (made for GPUs; runs on CPU too):
device time per call over inputs rotated out of the cache (CUDA graph replays), eager time per call (Python
dispatch included), CUDA kernel launches per call, and bytes moved (inputs read once, outputs written once)
against the measured copy bandwidth of the device (``frac_dram``).

Ops and baselines: resample (bicubic, align_corners=False) vs split -> permute -> F.interpolate -> cat and
timm's resample_abs_pos_embed; add_pos_embed vs ``x + `` those; sincos_2d vs timm's build_sincos2d_pos_embed
and posext's own PyTorch formula; apply_rope_2d (axial, grid positions built per call, as Rope2d does; also
with cached positions: ``posext_op``) vs timm's eager rotation and posext's PyTorch formula;
factorized_pos_embed (sum) vs eager indexing; resample_varlen (32 mixed-aspect images, padded with a
``grid_sizes`` tensor on the device, or packed in Qwen-VL merge order) vs its per-size PyTorch fallback.
Sizes: the position-embedding tables of the CPU tables (batch 1, C 768-1152, grids 14x14-64x64) and large
batched sizes that stream hundreds of MB.
"""
import torch

from .. import add_pos_embed, apply_rope_2d, resample, resample_varlen, sincos_2d
from .. import rope as posext_rope
from .. import varlen as posext_varlen
from ..sincos import CONVENTIONS, _sincos_2d_torch
from . import device_timing as dt
from . import plots
from .factorized import _impls as _factorized_impls
from .factorized import _indices, _tables
from .resample import _timm_fn as _timm_resample
from .resample import _torch_path as _torch_resample
from .rope import _timm_fns as _timm_rope_fns

WHAT = ("every posext op vs the path it replaces, device time per call over cache-rotated inputs, eager "
        "time, launches and bytes moved against the copy bandwidth")

# (name, shape, layout, prefix tokens, new grid side, size class)
RESAMPLE = [
    ("ViT-B/16 224->384", (1, 1 + 14 * 14, 768), "tokens", 1, 24, "pos-embed"),
    ("ViT-L/16 256->592", (1, 1 + 16 * 16, 1024), "tokens", 1, 37, "pos-embed"),
    ("ViT-L/14 518->224", (1, 1 + 37 * 37, 1024), "tokens", 1, 16, "pos-embed"),
    ("ViT-L/16 384->1024", (1, 1 + 24 * 24, 1024), "tokens", 1, 64, "pos-embed"),
    ("SigLIP-So400m/14 384->518", (1, 27 * 27, 1152), "tokens", 0, 37, "pos-embed"),
    ("SAM-B NHWC 64->32", (1, 64, 64, 768), "nhwc", 0, 32, "pos-embed"),
    ("batch 64 x ViT-B 14->24", (64, 1 + 14 * 14, 768), "tokens", 1, 24, "large"),
    ("batch 32 x ViT-L 16->37", (32, 1 + 16 * 16, 1024), "tokens", 1, 37, "large"),
]
# (name, batch, table grid side, new grid side, channels)
ADD = [("batch 64 x ViT-B/16 224->384", 64, 14, 24, 768), ("batch 32 x ViT-L/14 224->518", 32, 16, 37, 1024)]
# (embed dim, grid side, size class)
SINCOS = [(768, 14, "pos-embed"), (1024, 37, "pos-embed"), (1152, 64, "pos-embed"), (1024, 128, "large"),
          (1024, 256, "large")]
# (name, batch, heads, grid side, head_dim, size class); one class token
ROPE = [("ViT-B/16 224", 8, 12, 14, 64, "pos-embed"), ("ViT-L/16 384", 4, 16, 24, 64, "pos-embed"),
        ("batch 64 x ViT-B/16 384", 64, 12, 24, 64, "large")]
# (name, batch, grid side, channels)
FACTORIZED = [("ViT-L/14 518 (37x37)", 1, 37, 1024), ("batch 32 x ViT-L/14 518 (37x37)", 32, 37, 1024)]
# (name, channels, table side, resample_varlen keywords, padded): 32 images of 12x48, 48x12, 24x24, 16x36
VARLEN = [("32 mixed images, bilinear AA, padded", 768, 16, {"mode": "bilinear", "antialias": True}, True),
          ("32 mixed images, merge 2, packed", 768, 16,
           {"mode": "bilinear", "align_corners": True, "merge_size": 2}, False)]
VARLEN_GRIDS = ((12, 48), (48, 12), (24, 24), (16, 36)) * 8
DTYPES = (torch.float32, torch.bfloat16)
# profiling each call costs time; the baselines' counts vary
LAUNCHES_COUNTED = ("posext", "posext_op", "torch")


def _with_grad(fwd):
    """fn(x, grad) -> d(fwd(x))/dx . grad: forward + backward of a one-input op."""
    return lambda x, g: torch.autograd.grad(fwd(x), x, g)


def _resample_cases(device, quick):
    for name, shape, layout, prefix, side, size in RESAMPLE[:1] if quick else RESAMPLE:
        timm_fn = _timm_resample(layout, shape[0], prefix)
        kw = {} if layout == "nhwc" else {"num_prefix_tokens": prefix}
        for dtype in DTYPES[:1] if quick else DTYPES:
            for aa in (False,) if quick else (False, True):
                impls = {"posext": lambda x, aa=aa: resample(x, side, antialias=aa, **kw),
                         "torch": lambda x, aa=aa: _torch_resample(x, layout, side, aa, prefix)}
                if timm_fn is not None:
                    impls["timm"] = lambda x, aa=aa, f=timm_fn: f(x, side, aa)
                make = lambda dtype=dtype: (torch.randn(shape, device=device).to(dtype),)  # noqa: E731
                yield dict(op="resample", case=name, dtype=dtype, aa=aa, size=size), make, impls
                if aa or size != "pos-embed" or layout == "nhwc" or (quick and dtype != torch.float32):
                    continue
                out_shape = (shape[0], prefix + side * side, shape[2])

                def make_grad(dtype=dtype):
                    x = torch.randn(shape, device=device).to(dtype).requires_grad_()
                    return x, torch.randn(out_shape, device=device).to(dtype)

                yield (dict(op="resample", case=name, dtype=dtype, aa=False, size=size, pass_="fwd+bwd"),
                       make_grad, {k: _with_grad(f) for k, f in impls.items()})


def _add_cases(device, quick):
    for name, batch, old, side, c in ADD[:1] if quick else ADD:
        timm_fn = _timm_resample("tokens", 1, 1)
        for dtype in DTYPES[:1] if quick else DTYPES:
            impls = {"posext": lambda x, pe: add_pos_embed(x, pe, side),
                     "torch": lambda x, pe: x + _torch_resample(pe, "tokens", side, False)}
            if timm_fn is not None:
                impls["timm"] = lambda x, pe, f=timm_fn: x + f(pe, side, False).to(x.dtype)

            def make(dtype=dtype):
                return (torch.randn(batch, 1 + side * side, c, device=device).to(dtype),
                        torch.randn(1, 1 + old * old, c, device=device).to(dtype))

            yield dict(op="add_pos_embed", case=name, dtype=dtype, aa=False, size="large"), make, impls


def _sincos_cases(device, quick):
    try:
        from timm.layers.pos_embed_sincos import build_sincos2d_pos_embed
    except ImportError:
        build_sincos2d_pos_embed = None
    mae = CONVENTIONS["mae"]
    for dim, grid, size in SINCOS[:1] if quick else SINCOS:
        for dtype in DTYPES[:1] if quick or size != "large" else DTYPES:
            impls = {"posext": lambda: sincos_2d(dim, grid, dtype=dtype, device=device),
                     "fallback": lambda: _sincos_2d_torch(dim, grid, grid, 0, 1e4, mae.band_codes, 0, dtype,
                                                          torch.device(device))}
            if build_sincos2d_pos_embed is not None:
                impls["timm"] = lambda: build_sincos2d_pos_embed([grid, grid], dim=dim, dtype=dtype,
                                                                 device=device)
            yield dict(op="sincos_2d", case=f"D={dim} {grid}x{grid}", dtype=dtype, size=size), tuple, impls


def _rope_cases(device, quick):
    for name, batch, heads, side, head_dim, size in ROPE[:1] if quick else ROPE:
        freqs = posext_rope.rope_axial_freqs(head_dim, theta=100.0, device=device)
        pos = posext_rope.rope_positions_2d((side, side), device=device)
        timm_fn = _timm_rope_fns("axial", heads, side, head_dim, freqs, device)
        for dtype in DTYPES[:1] if quick else DTYPES:
            impls = {"posext": lambda q, k: apply_rope_2d(q, k, (side, side), freqs),
                     "posext_op": lambda q, k: apply_rope_2d(q, k, pos, freqs),
                     "fallback": lambda q, k: posext_rope._rope_torch(q, k, pos, freqs, 1, 0, 0)}
            if timm_fn is not None:
                impls["timm"] = lambda q, k, f=timm_fn: f(q, k, freqs)

            def make(dtype=dtype):  # q, k as a ViT makes them: views into the fused qkv projection
                qkv = torch.randn(batch, 1 + side * side, 3, heads, head_dim, device=device).to(dtype)
                qkv = qkv.permute(2, 0, 3, 1, 4)
                return qkv[0], qkv[1]

            yield dict(op="rope_2d", case=name, dtype=dtype, size=size), make, impls


def _factorized_cases(device, quick):
    for name, batch, side, c in FACTORIZED[:1] if quick else FACTORIZED:
        rows, cols = _indices([(side, side)], device)
        for dtype in DTYPES[:1] if quick else DTYPES:
            ty, tx = _tables("sum", c, dtype, device)
            impls = _factorized_impls("sum", batch, [(side, side)], rows, cols)

            def make(dtype=dtype, ty=ty, tx=tx):
                return torch.randn(batch, side * side, c, device=device).to(dtype), ty, tx

            yield (dict(op="factorized", case=name, dtype=dtype, size="large" if batch > 1 else "pos-embed"),
                   make, impls)


def _varlen_cases(device, quick):
    sizes = torch.tensor([(1, h, w) for h, w in VARLEN_GRIDS], device=device)  # [B, 3]: no host read, padded
    longest = max(h * w for h, w in VARLEN_GRIDS)
    for name, c, side, kwargs, padded in VARLEN[:1] if quick else VARLEN:
        length = longest if padded else None

        def fallback(table, kwargs=kwargs, length=length):
            mode, merge = kwargs["mode"], kwargs.get("merge_size", 1)
            plan = posext_varlen._plan(table, VARLEN_GRIDS, None, 0, mode, kwargs.get("antialias", False),
                                       kwargs.get("align_corners", False), length, merge)
            return posext_varlen._resample_varlen_torch(*plan[:5], mode, *plan[5:])

        impls = {"posext": lambda table, kwargs=kwargs, length=length: resample_varlen(
                     table, sizes, max_length=length, **kwargs),
                 "fallback": fallback}
        for dtype in DTYPES[:1] if quick else DTYPES:
            make = lambda dtype=dtype, c=c, side=side: (  # noqa: E731
                torch.randn(side * side, c, device=device).to(dtype),)
            yield dict(op="resample_varlen", case=name, dtype=dtype, size="large"), make, impls
            if not padded or dtype != torch.float32:
                continue

            def make_grad(dtype=dtype, c=c, side=side):
                table = torch.randn(side * side, c, device=device).to(dtype).requires_grad_()
                return table, torch.randn(len(VARLEN_GRIDS), longest, c, device=device).to(dtype)

            yield (dict(op="resample_varlen", case=name, dtype=dtype, size="large", pass_="fwd+bwd"),
                   make_grad, {k: _with_grad(f) for k, f in impls.items()})


CASES = (_resample_cases, _add_cases, _sincos_cases, _rope_cases, _factorized_cases, _varlen_cases)


def plan(devices, quick=False):
    # Walking the case generators builds only small index and frequency tensors, never the timed inputs.
    rows = sum(1 + sum(1 for cases in CASES for _ in cases(torch.device(name), quick)) for name in devices)
    return rows, None  # the number of rotated input sets, hence the time, depends on each device's cache


def _measure(row, make, impls, device, ceiling, quick):
    first = make()
    forward = row["pass"] == "fwd"
    out = impls["posext"](*first)
    moved = dt.tensor_bytes(first, out)
    row["mbytes"] = moved / 1e6
    row["bytes"] = moved if forward else None  # a backward's own minimum traffic is not counted
    count = 2 if quick else dt.rotation_sets(moved, device)
    sets = [first] + [make() for _ in range(count - 1)]
    repeats, eager_repeats = (2, 1) if quick else (20, 3)
    for impl, fn in impls.items():
        try:  # one broken baseline must not cost the other figures
            seconds, method = dt.device_seconds(fn, sets, device, repeats)
            row[f"{impl}_us"] = 1e6 * seconds
            row[f"{impl}_eager_us"] = 1e6 * dt.eager_seconds(fn, sets, device, eager_repeats)
            if impl == "posext":
                row["timing"] = method
        except Exception as exc:
            row[f"{impl}_error"] = f"{type(exc).__name__}: {exc}"[:300]
        if impl in LAUNCHES_COUNTED:
            try:
                launches = dt.launches_per_call(fn, first, device)
            except Exception as exc:
                launches, row[f"{impl}_launches_error"] = None, f"{type(exc).__name__}: {exc}"[:300]
            row[f"{impl}_launches"] = None if launches is None else launches["kernels"]
            row[f"{impl}_copies"] = None if launches is None else launches["copies"]
    row["sets"] = len(sets)
    for impl in impls:
        if impl != "posext" and row.get(f"{impl}_us") and row.get("posext_us"):
            row[f"x_{impl}"] = row[f"{impl}_us"] / row["posext_us"]
            row[f"x_{impl}_eager"] = row[f"{impl}_eager_us"] / row["posext_eager_us"]
    if row["bytes"] and row.get("posext_us"):
        row["floor_us"] = 1e6 * row["bytes"] / ceiling
        row["posext_GBps"] = row["bytes"] / row["posext_us"] / 1e3
        row["frac_dram"] = row["bytes"] / (row["posext_us"] * 1e-6) / ceiling


def run(devices, quick=False):
    rows = []
    for name in devices:
        device = torch.device(name)
        torch.manual_seed(0)
        nbytes = (2 << 30) if device.type == "cuda" else (32 << 20 if quick else 256 << 20)
        ceiling = dt.copy_bandwidth(device, nbytes)
        copy_row = {"device": name, "op": "copy", "case": f"copy of {nbytes >> 20} MiB", "bytes": 2 * nbytes,
                    "copy_GBps": ceiling / 1e9, "cache_bytes": dt.cache_bytes(device),
                    "series": f"{name} copy", "mbytes": 2 * nbytes / 1e6}
        if device.type == "cuda":
            props = torch.cuda.get_device_properties(device)
            copy_row.update(gpu=props.name, sm_count=props.multi_processor_count,
                            memory_bytes=props.total_memory)
        rows.append(copy_row)
        for cases in CASES:
            for spec, make, impls in cases(device, quick):
                row = {"device": name, "op": spec["op"], "case": spec["case"],
                       "dtype": str(spec["dtype"]).replace("torch.", ""), "aa": spec.get("aa"),
                       "pass": spec.get("pass_", "fwd"), "size": spec["size"]}
                row["series"] = f"{name} {row['op']} {row['pass']}"
                _measure(row, make, impls, device, ceiling, quick)
                rows.append(row)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    return rows


COLUMNS = [("op", "op", "{}"), ("case", "case", "{}"), ("dtype", "dtype", "{}"), ("aa", "AA", "{}"),
           ("pass", "pass", "{}"), ("posext_us", "posext us", "{:.1f}"),
           ("posext_eager_us", "eager us", "{:.1f}"), ("posext_launches", "launches", "{:g}"),
           ("torch_us", "torch us", "{:.1f}"), ("timm_us", "timm us", "{:.1f}"),
           ("x_torch", "vs torch", "{:.1f}x"), ("x_timm", "vs timm", "{:.1f}x"),
           ("posext_GBps", "GB/s", "{:.0f}"), ("frac_dram", "of copy", "{:.0%}"),
           ("copy_GBps", "copy GB/s", "{:.0f}")]
LEGEND = [
    ("posext_us", ("posext us = device time per call: CUDA graph replays over input sets rotated out of the "
                   "cache (CPU: wall time of a loop over them); eager us = a plain loop, Python dispatch "
                   "included")),
    ("posext_launches", "launches = CUDA kernels per call (torch.profiler)"),
    ("torch_us", ("torch = split -> permute -> F.interpolate -> permute -> cat for resample (x + that for "
                  "add_pos_embed), eager indexing for factorized; timm = resample_abs_pos_embed, "
                  "build_sincos2d_pos_embed, its eager RoPE rotation")),
    (("x_torch", "x_timm"), "vs X = X us / posext us: higher is faster for posext, 1.0x = the same time"),
    ("posext_GBps", ("GB/s = bytes read and written once / posext us; of copy = that / the measured copy "
                     "bandwidth (copy GB/s, the copy row)")),
]


def plot(rows, path, title):
    return plots.speedups(path, title, [r for r in rows if r["op"] != "copy"], x="mbytes",
                          x_label="MB moved per call (inputs read + outputs written)", series_key="series",
                          speedup_keys=[("x_torch", "vs torch"), ("x_timm", "vs timm")], connect=False,
                          log_x=True)
