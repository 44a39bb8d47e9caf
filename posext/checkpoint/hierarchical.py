"""Multi-stage models: tensors whose grid is a later stage's feature map or a window that scales with it.

Every rule is the chain of strided layers in front of the tensor (``geometry.Step``: out = (in + 2 pad - k)
// s + 1), as the family's model code builds it; the tensor's new size is that chain applied to the new
image size.

* LeViT ``stages.<s>.blocks.*.attn.attention_biases`` ``[heads, r*r]``: a stem of four 3x3 stride-2
  convolutions, then each stage after the first subsamples by 2 (ceil); a stage's ``downsample`` biases
  cover its input. EfficientFormerV2: two 3x3 stride-2 stem convolutions and one per stage; its attention
  runs at image / 32, its downsampling attention at image / 16.
* GCViT ``rel_pos`` tables: windows of image / (32, 32, 16, 32) per stage. CoAtNet (MaxxViT full-attention
  stages): the window is the whole feature map of stage s, image / 2^(s+2).
* Visformer ``pos_embed<n>`` ``[1, C, H, W]`` after a 7x7 stride-2 stem and ``patch_embed1..n``.
* VOLO ``pos_embed`` ``[1, H, W, C]``: a 7x7 stride-2 stem, the patch projection, then a stride-2 merge.
* NesT ``levels.<l>.pos_embed`` ``[1, blocks, b*b, C]``: a fixed count of blocks per level whose side b
  follows the level's grid (patch embedding, then a stride-2 pool per level).
"""
import math
import re
from typing import Optional

from .families import Key, StateView
from .findings import Finding, grid_finding, skip
from .geometry import GridRule, Step, patch_step
from .grid import fmt_grid
from .patches import kernel_size

CONV3_S2 = Step((3, 3), (2, 2), (1, 1))
SUBSAMPLE = Step((1, 1), (2, 2))
STEM7_S2 = Step((7, 7), (2, 2), (3, 3))
GCVIT_WINDOW_RATIOS = (32, 32, 16, 32)

_LEVIT = re.compile(r"stages\.(\d+)\.(blocks\.\d+\.attn|downsample\.attn_downsample)\.attention_biases$")
_EFFICIENTFORMER_V2 = re.compile(
    r"stages\.(\d+)\.(blocks\.\d+\.token_mixer|downsample\.attn)\.attention_biases$")
_EFFICIENTVIT = re.compile(r"stages\.(\d+)\.blocks\.\d+\.mixer\.m\.attn\.attention_biases$")
_MVIT = re.compile(r"stages\.\d+\.blocks\.\d+\.attn\.rel_pos_[hw]$")
EFFICIENTVIT_WINDOW = 7
_SWIN_TABLE = re.compile(r"layers\.(\d+)\.blocks\.\d+\.(attention\.self|attn)\.relative_position_bias_table$")
_STAGE_TABLE = re.compile(r"stages\.(\d+)\.blocks\.\d+\.attn\.rel_pos\.relative_position_bias_table$")


def _square_side(n: int) -> Optional[int]:
    side = math.isqrt(n)
    return side if side * side == n and n > 0 else None


def attention_bias_finding(d: StateView, k: Key, t) -> Optional[Finding]:
    """LeViT / EfficientFormerV2 ``attention_biases`` (None for any other key)."""
    if k.norm[-1] != "attention_biases" or t.dim() != 2:
        return None
    rel = k.sep.join(k.norm)
    levit, former, vit_msra = _LEVIT.search(rel), _EFFICIENTFORMER_V2.search(rel), _EFFICIENTVIT.search(rel)
    cap, square = None, False
    if vit_msra:
        stage = int(vit_msra.group(1))
        steps = (patch_step((16, 16)),) + (SUBSAMPLE,) * stage
        family = "efficientvit_msra"
        source = (f"EfficientViT-MSRA stage {stage}: window = min({EFFICIENTVIT_WINDOW}, feature map of the "
                  f"image's smaller side / {16 * 2 ** stage})")
        cap, square = EFFICIENTVIT_WINDOW, True
    elif levit and d.get(k.raw[:len(k.raw) - len(levit.group(0))] + "stem.conv4.linear.weight") is not None:
        stage, downsample = int(levit.group(1)), levit.group(2).startswith("downsample")
        steps = (CONV3_S2,) * 4 + (SUBSAMPLE,) * (stage - 1 if downsample else stage)
        family, source = "levit", f"LeViT stage {stage}{' downsample' if downsample else ''}: image / 16 stem"
    elif former:
        stage, downsample = int(former.group(1)), former.group(2).startswith("downsample")
        steps = (CONV3_S2,) * (4 if downsample else 5)
        family, source = "efficientformer_v2", f"EfficientFormerV2 stage {stage} attention at image / " \
                                               f"{16 if downsample else 32}"
    else:
        return skip(k.raw, "levit-style", f"attention_biases {tuple(t.shape)} of a family whose resolution "
                                          f"per stage is not known here (a window, or a fixed size); left "
                                          f"alone")
    side = _square_side(int(t.shape[1]))
    if side is None:
        return skip(k.raw, family, f"attention_biases {tuple(t.shape)}: the stored resolution is not square, "
                                   f"so it cannot be read from the shape; left alone")
    return Finding(k.raw, "resize_attention_biases", "other", (side, side), 0, family,
                   f"{family} attention_biases [heads, r*r] over the {side}x{side} stage resolution: resized "
                   f"bicubically (antialiased) over the (|dy|, |dx|) offset grid",
                   rule=GridRule(steps, source, cap=cap, square_from_min=square))


def unsupported_finding(d: StateView, k: Key, t) -> Optional[Finding]:
    """Grid-dependent tensors whose new size is not decided here: MViTv2 ``rel_pos_h`` / ``rel_pos_w`` (per
    block, from its query and key pooling strides) and BoTNet / Lambda-ResNet relative tables (per block,
    before or after its stride). A resize that changes the image size refuses them by key."""
    rel = k.sep.join(k.norm)
    if _MVIT.search(rel) and d.has_under(k.prefix(4), "pool_q"):
        family, what = "mvitv2", "MViTv2 rel_pos table (its size follows each block's pooling strides)"
    elif re.search(r"self_attn\.(pos_embed\.(height|width)_rel|pos_emb)$", rel):
        family = "byobnet"
        what = "BoTNet / Lambda-ResNet relative table (its size follows each block's stride)"
    else:
        return None
    return Finding(k.raw, "unsupported", "other", None, 0, family,
                   f"{what}: not resized by posext; timm's own checkpoint filter or model code must rebuild "
                   f"it")


def stage_window_finding(d: StateView, k: Key, t) -> Optional[Finding]:
    """GCViT / CoAtNet stage-window ``relative_position_bias_table`` (None for any other key)."""
    m = _STAGE_TABLE.search(k.sep.join(k.norm))
    if m is None or t.dim() != 2:
        return None
    stage = int(m.group(1))
    side = _square_side(int(t.shape[0]))
    if side is None or side % 2 == 0:
        return None
    window = ((side + 1) // 2,) * 2
    gcvit = any(".global_block." in key for key in d.keys)
    if gcvit:
        if stage >= len(GCVIT_WINDOW_RATIOS):
            return None
        ratio = GCVIT_WINDOW_RATIOS[stage]
        rule = GridRule((Step((ratio, ratio), (ratio, ratio)),),
                        f"GCViT stage {stage}: window = image / {ratio}")
        family, what = "gcvit", f"GCViT stage {stage} window (image / {ratio})"
    else:
        rule = GridRule((CONV3_S2,) * (stage + 2), f"CoAtNet stage {stage}: window = feature map, image / "
                                                   f"{2 ** (stage + 2)}")
        family, what = "coatnet", f"CoAtNet stage {stage} full-attention window (its feature map)"
    return Finding(k.raw, "resize_rel_pos_bias", "other", window, 0, family,
                   f"{what} {fmt_grid(window)}: table resized with the window (geometric offsets, as timm's "
                   f"set_window_size)", rule=rule,
                   params={"extra": 0, "table_layout": "rows", "method": "geometric", "window": True})


def swin_window_finding(d: StateView, k: Key, t, patch: Optional[GridRule]) -> Optional[Finding]:
    """Swin v1 window tables (timm ``layers.<s>.blocks.*.attn.``): the window is a model constant unless
    the stage's feature map (patches, then one stride-2 merge per stage) is smaller than it; then the
    window shrinks to the feature map, per axis. It never grows past the stored one. HF Swin
    (``attention.self.``) keeps its window (its model does not run on a stage smaller than the window)."""
    m = _SWIN_TABLE.search(k.sep.join(k.norm))
    if m is None or t.dim() != 2:
        return None
    if m.group(2) == "attention.self":
        return skip(k.raw, "hf-swin", "HF Swin window table: the window is a model constant; left alone")
    window = _odd_square_window(int(t.shape[0]))
    if window is None or patch is None or patch.patch_key is None:
        return skip(k.raw, "swin", f"Swin window table {tuple(t.shape)}: no square window or no patch "
                                   f"embedding to tell the stage grids; left alone")
    stage = int(m.group(1))
    rule = GridRule(patch.steps + (patch_step((2, 2)),) * stage,
                    f"Swin stage {stage}: window = min({window}, feature map of image / "
                    f"{patch.steps[0].kernel[0] * 2 ** stage}) per axis", patch_key=patch.patch_key,
                    cap=window)
    return Finding(k.raw, "resize_rel_pos_bias", "other", (window, window), 0, "swin",
                   f"Swin stage {stage} window table [(2w-1)^2, heads] of a {window}x{window} window: "
                   f"resized only where the new feature map is smaller than the window (geometric offsets, "
                   f"as timm's Swin filter)", rule=rule,
                   params={"extra": 0, "table_layout": "rows", "method": "geometric", "window": True})


def _odd_square_window(rows: int) -> Optional[int]:
    side = _square_side(rows)
    return (side + 1) // 2 if side is not None and side % 2 == 1 else None


def stage_table_finding(d: StateView, k: Key, t, old_size, num_prefix_tokens) -> Optional[Finding]:
    """Visformer / VOLO / NesT absolute tables (None for any other key)."""
    args = (old_size, num_prefix_tokens)
    last = k.norm[-1]
    m = re.fullmatch(r"pos_embed(\d)", last)
    if m and t.dim() == 4 and d.get(k.sibling(1, f"patch_embed{m.group(1)}.proj.weight")) is not None:
        n = int(m.group(1))
        kernels = [kernel_size(d, k.sibling(1, f"patch_embed{i}.proj.weight")) for i in range(1, n + 1)]
        if any(size is None for size in kernels):
            return None
        stem = (STEM7_S2,) if d.get(k.sibling(1, "stem.0.weight")) is not None else ()
        steps = stem + tuple(patch_step(size[0]) for size in kernels)
        rule = GridRule(steps, f"Visformer stage {n}: {'7x7 stride-2 stem, ' if stem else ''}patch_embed1.."
                               f"{n} ({', '.join(fmt_grid(s[0]) for s in kernels)})")
        return grid_finding(d, k, t, "visformer", (0,), "Visformer adds the table to the feature map",
                            f"Visformer {last}", *args, layout="nchw", rule=rule)
    if last == "pos_embed" and t.dim() == 4 and d.get(k.sibling(1, "patch_embed.conv.0.weight")) is not None \
            and d.has_under(k.prefix(1), "network."):
        proj = kernel_size(d, k.sibling(1, "patch_embed.proj.weight"))
        if proj is None:
            return None
        rule = GridRule((STEM7_S2, patch_step(proj[0]), patch_step((2, 2))),
                        f"VOLO: 7x7 stride-2 stem, {fmt_grid(proj[0])} patches, stride-2 merge")
        return grid_finding(d, k, t, "volo", (0,), "VOLO's NHWC table", "VOLO pos_embed", *args,
                            allow_nhwc=True, rule=rule)
    m = re.fullmatch(r"levels\.(\d+)\.pos_embed", ".".join(k.norm[-3:]))
    if m and t.dim() == 4:
        return _nest(d, k, t, int(m.group(1)))
    return None


def _nest(d, k, t, level):
    blocks, tokens = int(t.shape[1]), int(t.shape[2])
    per_side, side = _square_side(blocks), _square_side(tokens)
    patch = kernel_size(d, k.sibling(3, "patch_embed.proj.weight"))
    if per_side is None or side is None or patch is None:
        return skip(k.raw, "nest", f"NesT pos_embed {tuple(t.shape)} with no square blocks or patch "
                                   f"embedding; left alone")
    grid = (per_side * side,) * 2
    rule = GridRule((patch_step(patch[0]),) + (CONV3_S2,) * level,
                    f"NesT level {level}: {fmt_grid(patch[0])} patches, then {level} stride-2 pools")
    return Finding(k.raw, "resample_blocked", "other", grid, 0, "nest",
                   f"NesT level {level} pos_embed [1, {blocks} blocks, {side}x{side} tokens, C] over a "
                   f"{fmt_grid(grid)} grid: un-blocked, resampled (bicubic) and blocked again with {blocks} "
                   f"blocks, as timm's NesT filter does", rule=rule, params={"blocks": blocks})
