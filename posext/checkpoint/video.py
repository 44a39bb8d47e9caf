"""Video tables: a T x H x W token grid behind a Conv3d tubelet embedding, and 1-D time tables.

* A table beside a Conv3d patch embedding (``[C, 3, t, p_h, p_w]``: HF ViViT ``embeddings.
  position_embeddings``, timm-style ``pos_embed`` of VideoMAE-like models) stores P + T' x H x W rows,
  frame-major, T' = frames / t. The split of T' x H x W is not in the shape, so ``old_size=(H, W)``
  (``--old-size``; for a Hugging Face folder, its ``config.json``) settles it; the table is resampled
  separably (space per frame, then time linearly) to (num_frames / t, new grid).
* TimeSformer ``embeddings.time_embeddings`` ``[1, T, C]``: one row per frame, resampled over T with
  nearest neighbours, as its model does at run time when the frame count differs.
* Hiera video (``sep_pos_embed``): ``pos_embed_spatial`` ``[1, H*W, C]`` (the spatial grid, resampled as an
  image table) and ``pos_embed_temporal`` ``[1, T', C]`` (resampled linearly over time) behind a Conv3d
  stem; a 3 x 7 x 7 stem has stride (2, 4, 4).
"""
from typing import Optional

from .families import Key, StateView
from .findings import Finding, grid_finding, skip
from .geometry import GridRule
from .grid import AmbiguousGridError, GridArgumentError, old_size_arg, prefix_arg
from .patches import kernel_rule, kernel_size

TUBELET_KERNELS = ("patch_embeddings.projection.weight", "patch_embed.proj.weight")
# temporal stride of a Conv3d stem whose kernel is not its stride: Hiera's 3 x 7 x 7 stem steps 2 frames
HIERA_TEMPORAL_STRIDE = {3: 2}


def _temporal_stride(size) -> int:
    """Frames per slot of a Conv3d stem ``(spatial kernel, t)``: t, but 2 for the overlapping 3x7x7 one."""
    spatial, frames = size
    return HIERA_TEMPORAL_STRIDE.get(frames, frames) if spatial == (7, 7) else frames


def _tubelet(d: StateView, k: Key):
    for name in TUBELET_KERNELS:
        key = k.sibling(1, name)
        size = kernel_size(d, key)
        if size is not None and size[1] is not None:
            return key, _temporal_stride(size)
    return None, None


def video_finding(d: StateView, k: Key, t, old_size, num_prefix_tokens) -> Optional[Finding]:
    """The finding for a video table (None for any other key)."""
    if k.norm[-2:] == ("embeddings", "time_embeddings") and t.dim() == 3 and not k.is_text:
        frames = int(t.shape[-2])
        return Finding(k.raw, "resample_temporal", "tokens", None, 0, "hf-timesformer",
                       f"TimeSformer time_embeddings [1, T, C] with T={frames} frames: resampled over time "
                       f"(nearest, as its model does at run time)", params={"frames": frames, "tubelet": 1})
    if k.norm[-1] in ("pos_embed_spatial", "pos_embed_temporal") and t.dim() == 3:
        return _hiera(d, k, t, old_size)
    if k.norm[-1] not in ("position_embeddings", "pos_embed") or t.dim() != 3 or k.is_text:
        return None
    kernel_key, tubelet = _tubelet(d, k)
    if kernel_key is None:
        return None
    rule: GridRule = kernel_rule(d, kernel_key)
    cls = d.get(k.sibling(1, "cls_token")) is not None
    p = num_prefix_tokens if num_prefix_tokens is not None else (1 if cls else 0)
    rows = int(t.shape[-2]) - p
    if old_size is None:
        raise AmbiguousGridError(f"{k.raw}: a video table of {rows} grid rows behind the tubelet embedding "
                                 f"{kernel_key} (t={tubelet}) holds T' x H x W tokens, and the shape does "
                                 f"not tell T' from H x W; pass ", old_size_arg(), " (the frame grid)",
                                 key=k.raw, num_tokens=rows)
    cells = old_size[0] * old_size[1]
    if rows <= 0 or rows % cells:
        raise GridArgumentError(f"{k.raw}: ", old_size_arg(old_size), f" does not divide the {rows} grid "
                                f"rows of shape {tuple(t.shape)} (", prefix_arg(p), ")", key=k.raw,
                                num_tokens=rows)
    if not t.is_floating_point():
        return skip(k.raw, "video", f"video table of dtype {t.dtype}: not a floating table, left alone")
    frames = rows // cells
    return Finding(k.raw, "resample_video", "tokens", tuple(old_size), p, "video",
                   f"video table [1, P+T'xHxW, C] behind the tubelet embedding {kernel_key} (t={tubelet}): "
                   f"P={p}{' (cls_token)' if cls else ''}, T'={frames} frame slots of a "
                   f"{old_size[0]}x{old_size[1]} grid; resampled separably (space, then time linearly)",
                   rule=rule, params={"frames": frames, "tubelet": tubelet})


def _hiera(d: StateView, k: Key, t, old_size) -> Optional[Finding]:
    kernel_key = k.sibling(1, "patch_embed.proj.weight")
    size = kernel_size(d, kernel_key)
    if size is None or size[1] is None or d.get(k.sibling(1, "pos_embed_temporal")) is None:
        return None
    stride = _temporal_stride(size)
    if k.norm[-1] == "pos_embed_temporal":
        frames = int(t.shape[-2])
        return Finding(k.raw, "resample_temporal", "tokens", None, 0, "hiera",
                       f"Hiera pos_embed_temporal [1, T', C] with T'={frames} frame slots (temporal stride "
                       f"{stride}): resampled linearly over time",
                       params={"frames": frames, "tubelet": stride, "temporal_mode": "linear"})
    return grid_finding(d, k, t, "hiera", (0,), "Hiera's spatial table has no prefix rows",
                        "Hiera pos_embed_spatial", old_size, None, layout="tokens",
                        rule=kernel_rule(d, kernel_key))
