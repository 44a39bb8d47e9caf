"""Scan the tiny Hugging Face zoo for what changes with the image size (a by-hand tool, not run by CI).

For every case in ``hf_zoo.CASES``: the state-dict keys whose shape differs between the native-size and
the new-size model, keys only in one of them, persistent and non-persistent buffers, the patch-embedding
modules (kernel / stride), the run-time resizing transformers does (``F.interpolate`` calls found in the
embedding classes' source, quoted as text) and which posext ``mode`` / ``antialias`` reproduces it.

    python tests/zoo/scan_hf.py OUT.md   # also writes OUT.json
"""

import inspect
import json
import re
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hf_zoo  # noqa: E402

CANDIDATES = [
    dict(mode=m, antialias=a)
    for m in ("bicubic", "bilinear", "nearest")
    for a in (False, True)
    if not (m == "nearest" and a)
]


# facts read off the transformers sources and checked by hand on these tiny models
NOTES = {
    "vit": "prefix 1 (cls). Adapter only with the flag; align_corners=False, size=(H//p, W//p),"
    " cls row kept.",
    "deit": "prefix 2 (cls, distillation) kept apart by the adapter.",
    "dinov2": "Forward always calls the adapter and returns the table as is only when N matches AND H == W,"
    " so a"
    " non-square resized table cannot run (it re-interpolates from an assumed-square grid): square"
    " sizes only. Adapter interpolates in float32, bicubic, antialias off.",
    "dinov2_registers": "Registers are not in the table (prefix 1). Adapter: bicubic, antialias=True (torch's"
    " antialiased bicubic uses a=-0.5, so it differs even when upsampling). Square only as"
    " Dinov2.",
    "dinov3_vit": "RoPE: no grid-sized key; rope_embeddings.inv_freq is non-persistent. Nothing to resize.",
    "clip": "position_embedding.weight [1+N, D] (nn.Embedding, unbatched); position_ids non-persistent."
    " Config"
    " takes one int image_size.",
    "siglip": "No cls row (prefix 0), [N, D].",
    "siglip2_naflex": "Same key name and shape as SigLIP ([num_patches, D]) but the patch embedding is"
    " a Linear"
    " on pre-patchified input; the table is resized at run time to each image's spatial_shapes"
    " (bilinear, antialias=True, align_corners=False). Must be left alone: a Linear"
    " patch_embedding (2-D weight) is the tell.",
    "vit_mae": "Fixed 2-D sin-cos table stored as a parameter (zeros until initialize_weights). The adapter"
    " bicubic-interpolates it; posext sincos='auto' rebuilds it exactly instead (so adapter equality"
    " needs sincos='interpolate').",
    "beit_abs": "Absolute table, bicubic adapter. Forward re-interpolates whenever H != W: square only.",
    "beit_rel": "relative_position_bias_table [(2h-1)(2w-1)+3, heads] per layer; last 3 rows = cls->token,"
    " token->cls, cls->cls, kept. The forward ALWAYS resizes the sub-table to the current window"
    " (bilinear, align_corners default False, no antialias); relative_position_index is computed"
    " on the fly (no buffer). The forward reshapes the stored sub-table as (2w-1, 2h-1) then"
    " resizes to (2h-1, 2w-1): for a non-square window HF scrambles its own table, so only square"
    " sizes are meaningful.",
    "beit_shared_rel": "One shared_position_bias.relative_position_bias_table; same rules as beit_rel.",
    "data2vec_vision": "Same as BEiT (relative bias per layer).",
    "owlvit": "CLIP-like under vision_model.; square config.",
    "owlv2": "CLIP-like under vision_model.; square config.",
    "git": "CLIP-like under vision_model.",
    "idefics2_vision": "SigLIP-like [N, D] with a Conv2d patch embedding; positions are bucketized fractional"
    " coordinates, so any image size runs with the stored table; resizing to a new"
    " image_size config is also consistent. No adapter.",
    "sam_vision": "pos_embed [1, H/16, W/16, D] (NHWC, no prefix). Global-attention blocks store rel_pos_h /"
    " rel_pos_w [2*g-1, head_dim] that follow the grid; windowed blocks [2*window-1, head_dim] do"
    " not change. At run time only rel_pos is resized (linear, in get_rel_pos); pos_embed is not,"
    " so no adapter for the whole model.",
    "dpt": "Always resizes (bilinear, align_corners default False, no antialias). Square only"
    " (adapter assumes"
    " a square stored grid).",
    "timesformer": "position_embeddings [1, 1+N, D] resized at run time with mode='nearest'; time_embeddings"
    " [1, T, D] nearest over frames.",
    "vivit": "Conv3d tubelet; position_embeddings [1, 1 + T'*h*w, D] (T' = frames / tubelet). Its"
    " interpolate_pos_encoding assumes a square 2-D grid and is wrong for T' > 1. posext needs the"
    " frame count (Conv3d kernel + num_frames) to tell the grid.",
    "videomae": "Fixed 1-D sinusoid table held as a plain attribute (not in the state dict):"
    " nothing to resize.",
    "blip_vision": "Key embeddings.position_embedding (a Parameter without .weight) [1, 1+N, D].",
    "blip2_vision": "As BLIP.",
    "instructblip_vision": "As BLIP.",
    "yolos": "position_embeddings [1, 1 + N + det, D]: detection tokens AFTER the grid (config"
    " num_detection_tokens). Forward always resizes the grid part (bicubic, align_corners=False)"
    " from config.image_size. use_mid_position_embeddings adds encoder.interpolation.mid_position_embeddings"
    " [layers-1, 1, 1 + N + det, D] (same token layout, resized the same way; empty for 1 layer).",
    "swin": "Window attention only: relative_position_bias_table per window, relative_position_index"
    " non-persistent; nothing follows the image size.",
    "swin_abs": "use_absolute_embeddings: position_embeddings [1, N, D] with NO cls row (prefix 0);"
    " bicubic adapter with the flag.",
    "swinv2": "Continuous position bias (MLP) + non-persistent relative_coords_table / index; nothing to do.",
    "chinese_clip_vision": "CLIP-like.",
    "altclip_vision": "CLIP-like.",
    "xclip_vision": "CLIP-like; batch holds B*num_frames images.",
    "vit_msn": "ViT-like.",
    "layoutlmv3_visual": "pos_embed [1, 1+N, D] at the top level; text position_embeddings [max_pos, D] and"
    " non-persistent visual_bbox [1+N, 4] / position_ids must be left alone. No adapter"
    " in the model forward (its patch-embed helper can resize bicubic but is not used).",
    "flava_image": "ViT-like.",
    "pix2struct_vision": "Factorized row / column nn.Embedding(seq_len): nothing grid-sized; left alone.",
    "ijepa": "No cls (prefix 0), [1, N, D]; bicubic adapter with the flag.",
}


def _shape(t):
    return list(t.shape)


def _buffers(model):
    sd = model.state_dict()
    persistent, transient = [], []
    for name, buf in model.named_buffers():
        (persistent if name in sd else transient).append(f"{name} {_shape(buf)}")
    return persistent, transient


def _patch_embeds(model):
    out = []
    for name, mod in model.named_modules():
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.Conv3d)) and max(mod.stride) > 1:
            out.append(
                dict(
                    key=f"{name}.weight",
                    kind=type(mod).__name__,
                    kernel=list(mod.kernel_size),
                    stride=list(mod.stride),
                )
            )
        elif isinstance(mod, torch.nn.Linear) and re.search(r"patch_(embedding|projection)$", name):
            out.append(
                dict(key=f"{name}.weight", kind="Linear (pre-patchified input)", in_features=mod.in_features)
            )
    return out


def _interpolate_calls(model):
    """``interpolate(...)`` calls in the source of the model's embedding / attention classes."""
    calls, seen = [], set()
    for name, mod in model.named_modules():
        cls = type(mod)
        if cls in seen or not cls.__module__.startswith("transformers.models"):
            continue
        seen.add(cls)
        try:
            src = inspect.getsource(cls)
        except (OSError, TypeError):
            continue
        for m in re.finditer(r"interpolate\(", src):
            depth, i = 1, m.end()
            while depth and i < len(src):
                depth += {"(": 1, ")": -1}.get(src[i], 0)
                i += 1
            text = " ".join(src[m.end() : i - 1].split())
            if "pos" in text or "rel" in text or "embed" in text or "table" in text:
                calls.append(f"{cls.__name__}: interpolate({text})")
    return calls


def _grid(case, embeds, size):
    stride = next((e["stride"] for e in embeds if "stride" in e), None)
    return (size[0] // stride[-2], size[1] // stride[-1]) if stride else None


def _match_adapter(case, model, config, grid):
    """posext settings (current ``new_grid=`` API) whose resized model equals the run-time path."""
    from posext.checkpoint import resize_state_dict

    ref = hf_zoo.adapter_output(case, model, config, case.new)
    target, tconfig = hf_zoo.build(case, case.new, seed=5)
    extra = {"sincos": "interpolate"} if case.name == "vit_mae" else {}
    hits, errors = [], []
    for cand in CANDIDATES:
        try:
            new_sd, _ = resize_state_dict(model.state_dict(), grid, **cand, **extra)
            target.load_state_dict(new_sd, strict=True)
            kw = hf_zoo.inputs(case, tconfig, case.new)
            out = hf_zoo.forward(case, target, kw, **hf_zoo._extra(case, case.new))
            err = (out - ref).abs().max().item() if out.shape == ref.shape else float("inf")
            if err <= 1e-5:
                hits.append(dict(cand, max_err=err))
        except Exception as e:  # noqa: BLE001 - recorded in the spec
            errors.append(f"{cand}: {type(e).__name__}: {str(e)[:120]}")
    return hits, errors[:1]


def _torch_rel_tables(sd, old, new, mode, antialias):
    """BEiT-style ``relative_position_bias_table`` rows: a (2h-1, 2w-1) grid, then 3 cls rows, resized
    with torch (the oracle posext is compared against)."""
    out = dict(sd)
    (oh, ow), (nh, nw) = [(2 * g[0] - 1, 2 * g[1] - 1) for g in (old, new)]
    for k, t in sd.items():
        if k.endswith("relative_position_bias_table") and t.shape[0] == oh * ow + 3:
            grid = t[:-3].reshape(1, oh, ow, -1).permute(0, 3, 1, 2)
            kw = dict(align_corners=False, antialias=antialias) if mode != "nearest" else {}
            grid = torch.nn.functional.interpolate(grid, size=(nh, nw), mode=mode, **kw)
            out[k] = torch.cat([grid.permute(0, 2, 3, 1).reshape(nh * nw, -1), t[-3:]])
    return out


def _match_rel(case, model, config, old, grid):
    ref = hf_zoo.adapter_output(case, model, config, case.new)
    target, tconfig = hf_zoo.build(case, case.new, seed=5)
    hits = []
    for cand in CANDIDATES:
        target.load_state_dict(_torch_rel_tables(model.state_dict(), old, grid, **cand), strict=True)
        out = hf_zoo.forward(case, target, hf_zoo.inputs(case, tconfig, case.new))
        err = (out - ref).abs().max().item()
        if err <= 1e-5:
            hits.append(dict(cand, max_err=err, via="torch oracle on the relative table"))
    return hits


def _findings(find, sd):
    try:
        return find(sd)
    except Exception:  # noqa: BLE001 - an ambiguous table is a finding of its own (see notes)
        return []


def scan(case):
    from posext.checkpoint import find_position_embeddings

    model, config = hf_zoo.build(case, case.native)
    new_model, _ = hf_zoo.build(case, case.new)
    a, b = model.state_dict(), new_model.state_dict()
    embeds = _patch_embeds(model)
    grid = _grid(case, embeds, case.new)
    fwd = inspect.signature(type(model).forward).parameters
    row = dict(
        name=case.name,
        model=case.model.rsplit(".", 1)[1],
        native=list(case.native),
        new=list(case.new),
        square_only=case.square_only,
        frames=case.frames,
        changed={k: [_shape(a[k]), _shape(b[k])] for k in a if k in b and a[k].shape != b[k].shape},
        only_native=[f"{k} {_shape(a[k])}" for k in a if k not in b],
        only_new=[f"{k} {_shape(b[k])}" for k in b if k not in a],
        patch_embed=embeds,
        interpolate_pos_encoding_arg="interpolate_pos_encoding" in fwd,
        adapter=case.adapter,
        interpolate_calls=_interpolate_calls(model),
        posext_findings=[
            dict(
                key=f.key,
                action=f.action,
                layout=f.layout,
                old_grid=f.old_grid,
                prefix=f.num_prefix_tokens,
                family=f.family,
            )
            for f in _findings(find_position_embeddings, a)
            if f.action != "skip"
        ],
    )
    row["persistent_buffers"], row["nonpersistent_buffers"] = _buffers(model)
    if not row["posext_findings"]:
        try:
            find_position_embeddings(a)
        except Exception as e:  # noqa: BLE001 - recorded
            row["posext_error"] = f"{type(e).__name__}: {str(e)[:160]}"
    row["notes"] = NOTES.get(case.name, "")
    if case.adapter and grid and any("relative_position_bias_table" in k for k in row["changed"]):
        old = _grid(case, embeds, case.native)
        row["adapter_matches"], row["adapter_errors"] = _match_rel(case, model, config, old, grid), []
    elif case.adapter and grid:
        row["adapter_matches"], row["adapter_errors"] = _match_adapter(case, model, config, grid)
    return row


SUMMARY = """
## Summary for detection rules

* Every grid table follows the patch-embedding stride (Conv2d, kernel == stride; Conv3d for ViViT /
  VideoMAE tubelets). new grid = image_size // stride.
* Token layouts: `[1, P+N, D]` (`embeddings.position_embeddings`: ViT, DeiT P=2, Dinov2, BEiT, DPT,
  TimeSformer, ViTMSN, FLAVA, MAE sin-cos; P=0: IJepa, Swin absolute), unbatched `[P+N, D]`
  (`embeddings.position_embedding.weight`: CLIP family P=1, SigLIP / Idefics2 P=0), Parameter without
  `.weight` (`embeddings.position_embedding` `[1, 1+N, D]`: BLIP, BLIP-2, InstructBLIP), top-level
  `pos_embed` (LayoutLMv3, next to a text `embeddings.position_embeddings` that must stay), NHWC
  `pos_embed` `[1, h, w, D]` (SAM).
* Suffix tokens: YOLOS `[1, 1 + N + det, D]` (+ `encoder.interpolation.mid_position_embeddings`
  `[L-1, 1, 1 + N + det, D]`), the det rows kept after the grid.
* Video: ViViT `[1, 1 + T'*h*w, D]` (T' = frames / tubelet); TimeSformer `time_embeddings [1, T, D]`.
* Relative tables that follow the grid: BEiT / Data2VecVision `relative_position_bias_table`
  `[(2h-1)(2w-1) + 3, heads]` (3 cls rows last), SAM global-attention `rel_pos_h/w [2g-1, head_dim]`.
  Windowed tables (Swin, Swinv2, SAM windowed blocks) do not change.
* Left alone: SigLIP2 NaFlex (Linear patch embedding, same key/shape as SigLIP), Pix2Struct
  (row/column embeddings), DINOv3 (RoPE), VideoMAE (table not in the state dict), Swin / Swinv2.
* Buffers: CLIP-family `position_ids`, LayoutLMv3 `visual_bbox`, Swin `relative_position_index`,
  Swinv2 `relative_coords_table`, DINOv3 `inv_freq` are all non-persistent in transformers 5.23 (not in
  the state dict); no persistent grid-dependent buffer was found.
* Run-time adapters (all `align_corners=False`, all `size=(h, w)`, never `scale_factor`, prefix rows
  concatenated back untouched): bicubic without antialias for ViT-likes, CLIP family, BEiT absolute,
  YOLOS, Swin absolute, IJepa; bicubic WITH antialias for Dinov2WithRegisters; bilinear (no antialias) for
  DPT and the BEiT relative sub-table; nearest for TimeSformer (space and time); bilinear + antialias for
  SigLIP2 (per image, at run time).
* Non-square: CLIP family, SigLIP, MAE, GIT, OWL, BLIP*, FLAVA, Idefics2, SAM, video configs take one
  int size. Dinov2, BEiT, DPT accept [H, W] but their forward re-interpolates from an assumed-square
  table whenever H != W, so a non-square resized checkpoint cannot run there.
"""


def _md(rows):
    lines = [
        "# Hugging Face vision zoo: what depends on the image size",
        "",
        "Tiny random-weight models (transformers " + __import__("transformers").__version__ + "),"
        " built at the native and at the new size. `changed`: state-dict keys whose shape differs"
        " (native -> new). `adapter`: `flag` = forward(interpolate_pos_encoding=True), `always` = the"
        " forward resizes whenever the grid differs. `posext =` lists the posext `resize_state_dict`"
        " settings whose resized model matches the run-time path within 1e-5.",
        "",
        "| case | sizes | changed keys (native -> new) | only in one | patch embed | buffers (persistent)"
        " | run-time adapter | posext = | notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | | ERROR {r['error']} | | | | | | |")
            continue
        changed = "<br>".join(f"`{k}` {o}->{n}" for k, (o, n) in r["changed"].items()) or "none"
        only = "<br>".join(
            [f"native: `{x}`" for x in r["only_native"]] + [f"new: `{x}`" for x in r["only_new"]]
        )
        pe = (
            "<br>".join(
                f"`{e['key']}` {e['kind']} k={e.get('kernel', '')} s={e.get('stride', '')}"
                for e in r["patch_embed"]
            )
            or "none"
        )
        bufs = "<br>".join(f"`{b}`" for b in r["persistent_buffers"]) or "none"
        if r["nonpersistent_buffers"]:
            bufs += "<br>non-persistent: " + ", ".join(f"`{b}`" for b in r["nonpersistent_buffers"])
        adapter = (r["adapter"] or "none") + "<br>" + "<br>".join(f"`{c}`" for c in r["interpolate_calls"])
        match = "<br>".join(f"{m['mode']}, antialias={m['antialias']}" for m in r.get("adapter_matches", []))
        if r.get("adapter") and not match:
            match = "NONE " + "; ".join(r.get("adapter_errors", []))
        sizes = f"{r['native']}->{r['new']}" + (" (square only)" if r["square_only"] else "")
        if r["frames"]:
            sizes += f", T={r['frames']}"
        lines.append(
            f"| {r['name']} (`{r['model']}`) | {sizes} | {changed} | {only} | {pe} | {bufs} | {adapter}"
            f" | {match} | {r['notes']} |"
        )
    return "\n".join(lines) + "\n" + SUMMARY


def main(argv):
    out = Path(argv[1] if len(argv) > 1 else "hf_spec.md")
    warnings.filterwarnings("ignore")
    rows = []
    for case in hf_zoo.CASES:
        try:
            rows.append(scan(case))
        except Exception as e:  # noqa: BLE001 - one broken family must not hide the others
            rows.append(dict(name=case.name, error=f"{type(e).__name__}: {str(e)[:200]}"))
        print(case.name, "error" if "error" in rows[-1] else "ok", flush=True)
    out.write_text(_md(rows))
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main(sys.argv)
