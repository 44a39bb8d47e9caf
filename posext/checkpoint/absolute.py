"""Absolute tables of the families whose layout or grid differs from the plain ViT one.

Each rule below names the family, the layout (tokens, NCHW, suffix rows) and the image -> grid rule, from the
family's own model code (docs/checkpoints.md has the table):

* PiT ``pos_embed`` ``[1, C, H, W]`` (NCHW) behind overlapping patches: kernel p, stride p / 2.
* CrossViT ``pos_embed_<b>``: one grid per branch, from ``patch_embed.<b>.proj.weight``; branch b sees the
  image scaled by ``img_scale[b]``, read back from the stored grids (the branch of the largest image is 1).
* TNT ``patch_pos`` ``[1, 1+N, C]``: the outer patch is 4 x the ``pixel_pos`` side (stride-4 inner
  embedding); ``pixel_pos`` itself is per patch and never changes.
* YOLOS ``position_embeddings`` ``[1, 1+N+D, C]`` and ``mid_position_embeddings`` ``[L, 1, 1+N+D, C]``:
  D = ``detection_tokens`` rows after the grid, kept bit for bit.
* BLIP / BLIP-2 / InstructBLIP ``vision_model.embeddings.position_embedding`` ``[1, 1+N, C]`` (a parameter,
  no ``.weight``) beside ``class_embedding``.
* MobileCLIP ``image_encoder.model.pos_embed.pos_embed.pos_embed`` ``[1, 1, P+N, C]`` behind a patchify conv
  stem (``patch_emb.<i>.block.conv``, kernel = stride): the grid stride is the product of the kernels.
* NaFlex tables (HF SigLIP2 with a Linear patch embedding): resized per image at run time, left alone.
"""
import math
import re
from typing import Optional

from .families import Key, StateView
from .findings import Finding, grid_finding, skip
from .geometry import GridRule, Step, patch_step
from .grid import fmt_grid
from .patches import kernel_rule, kernel_size

_MOBILECLIP_STEM = re.compile(r"patch_emb\.(\d+)\.block\.conv\.weight$")


def family_table_finding(d: StateView, k: Key, t, old_size, num_prefix_tokens) -> Optional[Finding]:
    """The finding for a table of one of the families above, None for any other key."""
    norm, args = k.norm, (old_size, num_prefix_tokens)
    last = norm[-1]
    if last == "pos_embed" and t.dim() == 4 and d.get(k.sibling(1, "patch_embed.conv.weight")) is not None:
        return _pit(d, k, t, args)
    if re.fullmatch(r"pos_embed_\d+", last):
        return _crossvit(d, k, t, args)
    if last == "patch_pos" and d.get(k.sibling(1, "pixel_pos")) is not None:
        return _tnt(d, k, t, args)
    detections = d.get(k.sibling(1, "detection_tokens"))
    if norm[-2:] == ("embeddings", "position_embeddings") and detections is not None:
        return _yolos(d, k, t, k.sibling(1, "detection_tokens"), args)
    if last == "mid_position_embeddings":  # encoder.[interpolation.]mid_position_embeddings (files drop the
        for drop in (2, 3):                 # module name the model has)
            owner = k.sibling(drop, "embeddings.detection_tokens")
            if len(k.parts) >= drop and d.get(owner) is not None:
                return _yolos(d, k, t, owner, args)
    if norm[-2:] == ("embeddings", "position_embedding") and not k.is_text:
        return _blip(d, k, t, args)
    if norm[-3:] == ("embeddings", "position_embedding", "weight"):
        patch = d.get(k.sibling(2, "patch_embedding.weight"))
        if patch is not None and patch.dim() == 2:
            return skip(k.raw, "hf-siglip2-naflex", "NaFlex table (Linear patch embedding of pre-patchified "
                                                    "inputs): the model resizes it to each image's grid at "
                                                    "run time, so it is left alone")
    if norm[-4:] == ("model", "pos_embed", "pos_embed", "pos_embed") and not k.is_text:
        return _mobileclip(d, k, t, args)
    return None


def _pit(d, k, t, args):
    kernel, _ = kernel_size(d, k.sibling(1, "patch_embed.conv.weight"))
    stride = (kernel[0] // 2, kernel[1] // 2)
    conv = k.sibling(1, "patch_embed.conv.weight")
    rule = GridRule((Step(kernel, stride),), f"PiT patch embedding {conv}: kernel {fmt_grid(kernel)}, "
                                             f"stride {fmt_grid(stride)}")
    return grid_finding(d, k, t, "pit", (0,), "PiT adds the table to the patch grid only", "PiT pos_embed",
                        *args, layout="nchw", rule=rule)


def _crossvit(d, k, t, args):
    branches = {}
    for key in d.keys:
        m = re.fullmatch(re.escape(k.prefix(1)) + r"pos_embed_(\d+)", key)
        if m and d.get(k.prefix(1) + f"patch_embed.{m.group(1)}.proj.weight") is not None:
            branches[int(m.group(1))] = key
    branch = int(k.norm[-1].rsplit("_", 1)[1])
    if branch not in branches:
        return None
    # each branch's stored grid x patch is the image it saw; the largest of them is the model's image size
    seen = {}
    for b, key in branches.items():
        table = d.get(key)
        side = math.isqrt(int(table.shape[-2]) - 1)
        kernel, _ = kernel_size(d, k.prefix(1) + f"patch_embed.{b}.proj.weight")
        seen[b] = (side * kernel[0], kernel)
    image = max(s for s, _ in seen.values())
    pixels, kernel = seen[branch]
    scale = 1.0 if pixels == image else pixels / image
    step = Step(kernel, kernel, scale=scale)
    scaled = f" on the image scaled by {pixels}/{image}" if scale != 1.0 else ""
    source = f"CrossViT branch {branch}: patch {fmt_grid(kernel)}{scaled}"
    rule = GridRule((step,), source, patch_key=k.prefix(1) + f"patch_embed.{branch}.proj.weight"
                    if scale == 1.0 else None)
    return grid_finding(d, k, t, "crossvit", (1,), f"CrossViT branch {branch} stores its cls row",
                        f"CrossViT {k.norm[-1]}", *args, rule=rule)


def _tnt(d, k, t, args):
    pixel = d.get(k.sibling(1, "pixel_pos"))
    side = int(pixel.shape[-1]) * 4
    rule = GridRule((patch_step((side, side)),), f"TNT outer patch {side}x{side} (4 x the pixel_pos side)")
    return grid_finding(d, k, t, "tnt", (1,), "TNT patch_pos stores the cls row", "TNT patch_pos", *args,
                        rule=rule)


def _yolos(d, k, t, detection_key, args):
    detections = int(d.get(detection_key).shape[-2])
    what = "YOLOS " + ".".join(k.norm[-2:])
    kernel = detection_key.rsplit(".", 1)[0] + ".patch_embeddings.projection.weight"
    return grid_finding(d, k, t, "hf-yolos", (1,), f"YOLOS stores the cls row, the grid, then the "
                        f"{detections} detection-token rows ({detection_key})", what, *args, layout="tokens",
                        num_suffix_tokens=detections, rule=kernel_rule(d, kernel))


def _blip(d, k, t, args):
    if t.dim() != 3:
        return None
    cls = d.get(k.sibling(1, "class_embedding")) is not None
    return grid_finding(d, k, t, "hf-blip", (1,) if cls else (0,),
                        "BLIP-style vision embeddings with class_embedding store its row" if cls else
                        "BLIP-style vision embeddings without class_embedding store no prefix rows",
                        "BLIP vision embeddings.position_embedding", *args,
                        rule=kernel_rule(d, k.sibling(1, "patch_embedding.weight")))


def _mobileclip(d, k, t, args):
    stem = k.sibling(3, "patch_emb.")
    convs = sorted((int(m.group(1)), key) for key in d.keys if key.startswith(stem)
                   for m in [_MOBILECLIP_STEM.search(key)] if m)
    kernels = [kernel_size(d, key)[0] for _, key in convs if kernel_size(d, key) is not None]
    rule = None
    if kernels:
        total = (math.prod(kk[0] for kk in kernels), math.prod(kk[1] for kk in kernels))
        rule = GridRule((patch_step(total),), f"MobileCLIP conv stem {stem}* (kernels "
                                              f"{', '.join(map(fmt_grid, kernels))}): "
                                              f"stride {fmt_grid(total)}")
    cls = d.get(k.sibling(3, "cls_token")) is not None
    return grid_finding(d, k, t, "mobileclip", (0, 1) if cls else (0,),
                        "MobileCLIP [1, 1, P+N, C] table", "MobileCLIP pos_embed", *args, layout="tokens",
                        rule=rule)
