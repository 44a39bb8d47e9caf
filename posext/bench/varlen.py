"""Varlen job: one learned table resampled to every image's grid of a mixed-aspect batch, in one call.

``posext.resample_varlen`` is timed as it runs in this process (the fused op when the build registers
``torch.ops.posext.resample_varlen``, else its size-by-size path over ``posext.resample``; each row records
which, and posext's backend) against the code native-resolution models run for the same result:

* bilinear + antialias, padded to the longest image: HF SigLIP2's
  ``Siglip2VisionEmbeddings.resize_positional_embeddings`` (one ``F.interpolate`` per image), timm NaFlexViT's
  ``NaFlexEmbeds._apply_learned_naflex_pos_embed`` (one ``F.interpolate`` per distinct size, ``index_add_``)
  and a plain per-image ``F.interpolate`` loop with ``pad_sequence``;
* bilinear without antialias, padded: timm's ``_apply_learned_naflex_pos_embed_grid_sample`` (``grid_sample``
  at every patch coordinate);
* bilinear, align_corners=True, 2 x 2 merge order, packed: HF Qwen3-VL's vision model (its interpolation
  indices and weights, then the weighted gather from its ``nn.Embedding`` table).

Forward, and forward + backward to the table; time and the peak of the bytes torch's CPU allocator holds
during one call (torch.profiler memory events); the largest difference from posext's rows.
"""
import os
import statistics

import torch
import torch.nn.functional as F

from . import plots
from .common import blocked_seconds, installed, span

WHAT = ("posext.resample_varlen over mixed-aspect batches vs HF SigLIP2, timm NaFlex (interpolate and "
        "grid_sample), HF Qwen3-VL and a per-image F.interpolate loop: forward and forward+backward, time "
        "and allocator peak")

MIXED = ((12, 48), (48, 12), (24, 24), (16, 36))  # 1:4, 4:1, 1:1, 4:9; 576 tokens each
EXTREME = ((8, 72), (72, 8))  # 1:9 and 9:1, 576 tokens each
MIXED_64 = ((16, 64), (64, 16), (32, 32), (20, 48))  # for the 64 x 64 table: 960-1024 tokens each
EXTREME_64 = ((12, 96), (96, 12))  # 1152 tokens each
# (batch name, grids, channels, table side); the first QUICK cases are the --quick subset.
CASES = [
    ("mixed", MIXED * 2, 768, 16),
    ("extreme", EXTREME * 4, 768, 16),
    ("mixed", MIXED * 2, 1152, 16),
    ("mixed", MIXED * 8, 768, 16),
    ("mixed", MIXED_64 * 2, 768, 64),
    ("extreme", EXTREME_64 * 4, 768, 64),
]
QUICK = 2

# The settings: (key, label, posext keyword arguments, padded); each baseline belongs to one of them.
SETTINGS = {
    "aa": ("bilinear AA, padded", {"mode": "bilinear", "antialias": True}, True),
    "noaa": ("bilinear, padded", {"mode": "bilinear", "antialias": False}, True),
    "merge": ("bilinear align_corners, merge 2, packed",
              {"mode": "bilinear", "align_corners": True, "merge_size": 2}, False),
}
# (path, setting, the module it needs or None)
PATHS = [
    ("posext", "aa", None), ("HF SigLIP2", "aa", "transformers"), ("timm NaFlex interp", "aa", "timm"),
    ("F.interpolate loop", "aa", None),
    ("posext", "noaa", None), ("timm NaFlex grid_sample", "noaa", "timm"),
    ("posext", "merge", None), ("HF Qwen3-VL", "merge", "transformers"),
]


def _cases(quick):
    for name, grids, channels, side in CASES[:QUICK] if quick else CASES:
        yield f"{name} x{len(grids)}", list(grids), channels, side


def _paths():
    return [p for p in PATHS if p[2] is None or installed(p[2])]


def _min_time(quick):
    return 0.01 if quick else 0.2


def plan(devices, quick=False):
    timings = len(list(_cases(quick))) * len(_paths())
    return timings, 2 * timings * _min_time(quick)


# Each path: make(table [H*W, C], grids, max_length) -> (leaf, call): call() returns the rows built from
# ``leaf``, the tensor the gradient is taken with respect to (a module's own parameter for the baselines
# that live in a module, so it is their code that runs).

def _posext(setting):
    import posext

    kwargs = SETTINGS[setting][1]

    def make(table, grids, max_length):
        leaf = table.clone().requires_grad_()
        length = max_length if SETTINGS[setting][2] else None
        return leaf, lambda: posext.resample_varlen(leaf, grids, max_length=length, **kwargs)
    return make


def _own(fn, library):
    """``fn``, refused when it is not the library's own code (an accelerated class would time posext)."""
    if not getattr(fn, "__module__", "").startswith(library):
        raise RuntimeError(f"{fn.__qualname__} comes from {fn.__module__}, not {library}: not a baseline")
    return fn


def _siglip2(table, grids, max_length):
    from transformers.models.siglip2.modeling_siglip2 import Siglip2VisionEmbeddings

    side = int(round(table.shape[0] ** 0.5))
    leaf = table.clone().requires_grad_()
    shapes = torch.tensor(grids, dtype=torch.long)
    resize = _own(Siglip2VisionEmbeddings.resize_positional_embeddings, "transformers")
    return leaf, lambda: resize(leaf.view(side, side, -1), shapes, max_length)


def _patch_coord(grids, max_length):
    """[B, L, 2] (y, x) of every patch, zeros on the padding (as timm's NaFlex loader pads)."""
    coord = torch.zeros(len(grids), max_length, 2, dtype=torch.long)
    for i, (h, w) in enumerate(grids):
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        coord[i, :h * w] = torch.stack([ys.flatten(), xs.flatten()], dim=1)
    return coord


def _timm(grid_sample):
    def make(table, grids, max_length):
        from timm.models.naflexvit import NaFlexEmbeds

        side = int(round(table.shape[0] ** 0.5))
        embeds = NaFlexEmbeds(embed_dim=table.shape[1], proj_type="linear", class_token=False,
                              pos_embed_grid_size=(side, side), pos_embed_interp_mode="bilinear",
                              pos_embed_antialias=True, pos_embed_use_grid_sample=grid_sample)
        with torch.no_grad():
            embeds.pos_embed.copy_(table.view(1, side, side, -1))
        coord = _patch_coord(grids, max_length)
        apply = _own(embeds._apply_learned_naflex_pos_embed_grid_sample if grid_sample
                     else embeds._apply_learned_naflex_pos_embed, "timm")

        def call():
            x = table.new_zeros(len(grids), max_length, table.shape[1])
            apply(x, patch_coord=coord)  # adds the position rows to x in place
            return x
        return embeds.pos_embed, call
    return make


def _loop(table, grids, max_length):
    side = int(round(table.shape[0] ** 0.5))
    leaf = table.clone().requires_grad_()

    def call():
        grid = leaf.view(side, side, -1).permute(2, 0, 1).unsqueeze(0)
        rows = [F.interpolate(grid, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
                .flatten(2)[0].t() for h, w in grids]
        out = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
        return F.pad(out, (0, 0, 0, max_length - out.shape[1]))
    return leaf, call


def _qwen3vl(table, grids, max_length):
    from transformers import Qwen3VLVisionConfig
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionModel

    channels = table.shape[1]
    config = Qwen3VLVisionConfig(hidden_size=channels, num_heads=max(1, channels // 64), depth=0,
                                 intermediate_size=64, out_hidden_size=64, deepstack_visual_indexes=[],
                                 num_position_embeddings=table.shape[0], spatial_merge_size=2)
    model = Qwen3VLVisionModel(config).eval()
    with torch.no_grad():
        model.pos_embed.weight.copy_(table)
    grid_thw = torch.tensor([(1, h, w) for h, w in grids], dtype=torch.long)
    if hasattr(model, "fast_pos_embed_interpolate"):  # the transformers releases that have the method
        return model.pos_embed.weight, lambda: model.fast_pos_embed_interpolate(grid_thw)
    from transformers.vision_utils import get_vision_interpolation_indices_and_weights

    def call():  # what Qwen3VLVisionModel.forward runs for its position rows
        indices, weights = get_vision_interpolation_indices_and_weights(
            grid_thw, num_grid_per_side=model.num_grid_per_side, mode=model.interpolation_mode,
            align_corners=model.interpolation_align_corners,
            spatial_merge_size=model.config.spatial_merge_size)
        return (model.pos_embed(indices) * weights[:, :, None]).sum(1)
    return model.pos_embed.weight, call


MAKERS = {"HF SigLIP2": _siglip2, "timm NaFlex interp": _timm(False), "F.interpolate loop": _loop,
          "timm NaFlex grid_sample": _timm(True), "HF Qwen3-VL": _qwen3vl}


def peak_bytes(fn):
    """(the most bytes torch's CPU allocator held at once during ``fn()`` beyond what it held before (the
    running sum of torch.profiler's allocation and free events), the result included; ``fn()``)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    held = peak = 0
    for event in events:
        held += event.nbytes()
        peak = max(peak, held)
    return peak, out


def _profile(leaf, call):
    """One path's (forward result, fwd peak bytes, fwd+bwd peak bytes, forward, forward+backward), warmed
    up."""
    def forward():
        with torch.no_grad():
            return call()

    fwd_bytes, out = peak_bytes(forward)
    grad = torch.randn_like(out)

    def backward():
        return torch.autograd.grad(call(), [leaf], grad)

    bwd_bytes = peak_bytes(backward)[0]
    for _ in range(3):  # caches, lazy init, allocator growth
        forward()
        backward()
    return out, fwd_bytes, bwd_bytes, forward, backward


def _ms(fn, min_time):
    return 1e3 * blocked_seconds(fn, min_time)


def _valid(out, grids, padded):
    """The image rows of a result (padding rows left out): padded [B, L, C] -> packed."""
    return torch.cat([out[i, :h * w] for i, (h, w) in enumerate(grids)]) if padded else out


# Every path of a batch is timed in turn, round after round; a ratio is the median of its per-round ratios, so
# that a slow spell of the machine lands on both sides of it.
ROUNDS = 5


def run(devices, quick=False):
    import posext

    if "cpu" not in devices:
        return []
    min_time = _min_time(quick)
    rounds = 1 if quick else ROUNDS
    backend, fused = posext.backend(), hasattr(torch.ops.posext, "resample_varlen")
    paths = _paths()
    rows = []
    for batch, grids, channels, side in _cases(quick):
        torch.manual_seed(0)
        table = torch.randn(side * side, channels)
        max_length = max(h * w for h, w in grids)
        entries = []
        for path, setting, _ in paths:
            make = _posext(setting) if path == "posext" else MAKERS[path]
            out, fwd_bytes, bwd_bytes, forward, backward = _profile(*make(table, grids, max_length))
            entries.append({"path": path, "setting": setting, "out": out, "fwd_bytes": fwd_bytes,
                            "bwd_bytes": bwd_bytes, "forward": forward, "backward": backward,
                            "shape": out.shape, "fwd": [], "bwd": [], "write": [], "load": []})
        for _ in range(rounds):
            for e in entries:
                e["load"].append(os.getloadavg()[0])
                e["fwd"].append(_ms(e["forward"], min_time / rounds))
                e["bwd"].append(_ms(e["backward"], min_time / rounds))
                if e["path"] == "posext":
                    e["write"].append(_ms(lambda: torch.zeros(e["shape"]), min_time / rounds))
        reference = {}
        for e in entries:
            setting, padded = e["setting"], SETTINGS[e["setting"]][2]
            median = statistics.median
            row = {"batch": batch, "B": len(grids), "C": channels, "table": f"{side}x{side}",
                   "tokens": sum(h * w for h, w in grids), "setting": SETTINGS[setting][0], "path": e["path"],
                   "fwd_ms": median(e["fwd"]), "bwd_ms": median(e["bwd"]), "fwd_mib": e["fwd_bytes"] / 2**20,
                   "bwd_mib": e["bwd_bytes"] / 2**20, "x_fwd": None, "x_bwd": None, "max_diff": None,
                   "backend": backend, "fused_op": fused, "load": median(e["load"]), "rounds": rounds}
            if e["path"] == "posext":
                reference[setting] = e
                row.update(write_ms=statistics.median(e["write"]),
                           x_write=statistics.median([f / w for f, w in zip(e["fwd"], e["write"])]))
            elif setting in reference:
                ref = reference[setting]
                row.update(x_fwd=statistics.median([t / r for t, r in zip(e["fwd"], ref["fwd"])]),
                           x_bwd=statistics.median([t / r for t, r in zip(e["bwd"], ref["bwd"])]),
                           max_diff=(_valid(e["out"], grids, padded).float()
                                     - _valid(ref["out"], grids, padded).float()).abs().max().item())
            rows.append(row)
    return rows


COLUMNS = [("batch", "batch", "{}"), ("B", "B", "{}"), ("C", "C", "{}"), ("table", "table", "{}"),
           ("setting", "setting", "{}"), ("path", "path", "{}"), ("fwd_ms", "fwd ms", "{:.2f}"),
           ("bwd_ms", "fwd+bwd ms", "{:.2f}"), ("x_write", "fwd / one write", "{:.2f}x"),
           ("x_fwd", "vs posext fwd", "{:.2f}x"),
           ("x_bwd", "vs posext fwd+bwd", "{:.2f}x"), ("fwd_mib", "fwd peak MiB", "{:.1f}"),
           ("bwd_mib", "fwd+bwd peak MiB", "{:.1f}"), ("max_diff", "max abs diff", "{:.1e}"),
           ("backend", "backend", "{}"), ("fused_op", "fused op", "{}")]
LEGEND = [
    ("batch", "batch: with the 16x16 table mixed = grids 12x48, 48x12, 24x24, 16x36 repeated, extreme = "
              "8x72, 72x8 repeated; with the 64x64 table mixed = 16x64, 64x16, 32x32, 20x48, extreme = "
              "12x96, 96x12; padded results are [B, longest image, C]"),
    ("setting", "setting: what every path of it computes; posext = posext.resample_varlen with those "
                "arguments (max_length = the longest image where padded)"),
    (("path",), "HF SigLIP2 = transformers Siglip2VisionEmbeddings.resize_positional_embeddings; timm NaFlex "
                "interp / grid_sample = timm NaFlexEmbeds._apply_learned_naflex_pos_embed(_grid_sample) on a "
                "zero [B, L, C] (bilinear, antialias for interp); HF Qwen3-VL = Qwen3VLVisionModel's "
                "interpolation indices and weights and its weighted nn.Embedding gather (fast_pos_embed_"
                "interpolate where the release has it); F.interpolate loop = one F.interpolate per image, "
                "pad_sequence"),
    ("x_write", "fwd / one write = posext's forward ms / the ms of torch.zeros of its result's shape (a "
                "fresh tensor of that size written once: the floor of any call that returns it)"),
    ("x_fwd", "vs posext = path ms / posext ms of the same setting: higher is faster for posext"),
    ("fwd_mib", "peak MiB = the most bytes torch's CPU allocator held at once during one call beyond what it "
                "held before (torch.profiler memory events, summed in time order): intermediates, the result "
                "and, for fwd+bwd, saved tensors and the gradient; not the inputs, not memory a kernel takes "
                "outside torch's allocator (posext's CPU forward: one band of rows of scratch per thread)"),
    ("max_diff", "max abs diff = largest absolute difference from posext's rows of the same setting, image "
                 "rows only (SigLIP2 pads with an image's first row, grid_sample with the row at (0, 0))"),
    ("backend", "backend = posext.backend(); fused op = whether torch.ops.posext has resample_varlen"),
    (None, "ms = median over rounds of torch.utils.benchmark blocked runs (3 warm-up calls first), every "
           "path of a batch timed in turn each round; ratios = medians of the per-round ratios; fp32, CPU; "
           "backward = torch.autograd.grad to the table"),
]


def readme_table(rows):
    """One row per batch and setting (the full table has a row per path): posext's times and peaks, and each
    baseline's ratios. Returns (columns, table rows, legend lines for the derived columns)."""
    baselines = list(dict.fromkeys(r["path"] for r in rows if r["path"] != "posext"))
    columns = [("batch", "batch", "{}"), ("B", "B", "{}"), ("C", "C", "{}"), ("table", "table", "{}"),
               ("setting", "setting", "{}"), ("ms", "posext ms, fwd / fwd+bwd", "{}"),
               ("x_write", "fwd / one write", "{:.2f}x"),
               ("mib", "posext peak MiB, fwd / fwd+bwd", "{}")]
    columns += [(p, f"vs {p}", "{}") for p in baselines]
    table = []
    for r in rows:
        if r["path"] == "posext":
            table.append({k: r[k] for k in ("batch", "B", "C", "table", "setting")})
            table[-1].update(ms=f"{r['fwd_ms']:.2f} / {r['bwd_ms']:.2f}", x_write=r.get("x_write"),
                             mib=f"{r['fwd_mib']:.1f} / {r['bwd_mib']:.1f}")
        elif r["x_fwd"] is not None and table:
            table[-1][r["path"]] = (f"{r['x_fwd']:.2f}x / {r['x_bwd']:.2f}x "
                                    f"({r['fwd_mib']:.0f} / {r['bwd_mib']:.0f} MiB)")
    legend = ["fwd / one write: posext's forward ms / the ms of torch.zeros of its result's shape",
              "vs X cells: X ms / posext ms, forward / forward+backward (higher is faster for posext), then "
              "X's peak MiB, forward / forward+backward"]
    return columns, table, legend


def _best_peer(rows):
    """{(batch, B, C, table, setting): the fastest baseline row's (fwd ratio, fwd+bwd ratio, path)}."""
    groups = {}
    for r in rows:
        if r["x_fwd"] is not None:
            groups.setdefault((r["batch"], r["B"], r["C"], r["table"], r["setting"]), []).append(r)
    return {k: (min(g, key=lambda r: r["fwd_ms"]), min(g, key=lambda r: r["bwd_ms"]))
            for k, g in groups.items()}


def summary(rows):
    out = []
    fused = {r["fused_op"] for r in rows}
    where = ("with the fused varlen op" if fused == {True} else "size by size through posext.resample, no "
             "fused varlen op" if fused == {False} else "the fused varlen op in some rows only")
    siglip = [r for r in rows if r["path"] == "HF SigLIP2" and r["x_fwd"] is not None]
    if siglip:
        out.append(f"posext ({where}) vs HF SigLIP2 (bilinear, antialias, padded): "
                   f"{span([r['x_fwd'] for r in siglip], '{:.2f}x')} forward, "
                   f"{span([r['x_bwd'] for r in siglip], '{:.2f}x')} forward+backward over {len(siglip)} "
                   f"batches (SigLIP2 ms / posext ms).")
    best = _best_peer(rows)
    if best:
        fwd = [f["x_fwd"] for f, _ in best.values()]
        bwd = [b["x_bwd"] for _, b in best.values()]
        won = (sum(x > 1 for x in fwd), sum(x > 1 for x in bwd))
        out.append(f"Against the fastest other path of each setting and batch: {span(fwd, '{:.2f}x')} "
                   f"forward, {span(bwd, '{:.2f}x')} forward+backward (that path's ms / posext ms; posext is "
                   f"faster in {won[0]} of {len(fwd)} forward and {won[1]} of {len(bwd)} forward+backward "
                   f"cases).")
    writes = [r["x_write"] for r in rows if r.get("x_write") is not None]
    if writes:
        out.append(f"posext's forward takes {span(writes, '{:.2f}x')} the time of writing its result once "
                   f"(torch.zeros of that shape).")
    loads = [r["load"] for r in rows if r.get("load") is not None]
    if loads:
        out.append(f"The 1-minute load average was {span(loads, '{:.1f}')} while these rows were timed; "
                   f"other work on the machine slows some calls and not others, so single ratios are noisy.")
    diffs = [r["max_diff"] for r in rows if r["max_diff"] is not None]
    if diffs:
        out.append(f"Every baseline agrees with posext within {max(diffs):.1e} (image rows).")
    return out


def plot(rows, path, title):
    """Speedup of posext over each baseline, one slot per batch / C / table, one series per pass."""
    points = {}
    for r in rows:
        if r["x_fwd"] is None:
            continue
        case = f"{r['batch']} C{r['C']} t{r['table'].split('x')[0]}"
        for name, key in (("fwd", "x_fwd"), ("fwd+bwd", "x_bwd")):
            points.setdefault((case, name), {"case": case, "series": name})[r["path"]] = r[key]
    keys = [(p, p) for p in dict.fromkeys(r["path"] for r in rows if r["x_fwd"] is not None)]
    return plots.speedups(path, title, list(points.values()), x="case", x_label="batch, channels, table side",
                          series_key="series", speedup_keys=keys, categorical=True)
