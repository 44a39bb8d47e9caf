"""One function per action: the tensor of a finding resized to its new size (see ``resize.py``).

Every executor takes ``(tensor, finding, new, options)`` and returns the new tensor in the input's dtype,
device and layout; rows outside the grid (prefix, suffix, extra relative-position rows) are kept bit for
bit. ``options`` holds ``mode`` and ``antialias`` for learned absolute tables.
"""
import math

import torch

from ..resample import resample
from ..sincos import sincos_2d
from . import transforms


def _grid_rows(t: torch.Tensor) -> torch.Tensor:
    """A token table with any leading dims ([1, R, C], [R, C], [1, 1, R, C], [L, 1, R, C]) as [B, R, C]."""
    return t.reshape(-1, t.shape[-2], t.shape[-1])


def resample_table(t: torch.Tensor, f, new, options) -> torch.Tensor:
    kwargs = dict(mode=options["mode"], antialias=options["antialias"], align_corners=False)
    if f.layout == "nhwc":
        return resample(t, new, old_size=f.old_grid, **kwargs)
    if f.layout == "nchw":
        out = resample(t.permute(0, 2, 3, 1), new, old_size=f.old_grid, **kwargs)
        return out.permute(0, 3, 1, 2).contiguous()
    rows = _grid_rows(t)
    suffix = f.num_suffix_tokens
    body = rows[:, :rows.shape[1] - suffix] if suffix else rows
    out = resample(body, new, old_size=f.old_grid, num_prefix_tokens=f.num_prefix_tokens, **kwargs)
    if suffix:
        out = torch.cat([out, rows[:, rows.shape[1] - suffix:]], dim=1)
    return out.reshape(t.shape[:-2] + out.shape[-2:])


def regenerate_sincos(t: torch.Tensor, f, new, options) -> torch.Tensor:
    p = f.num_prefix_tokens
    table = sincos_2d(t.shape[-1], new, convention="mae", num_prefix_tokens=p, dtype=t.dtype, device=t.device)
    if p:
        table[:p] = t.detach().reshape(-1, t.shape[-1])[:p]  # the (zero) prefix rows, kept bit for bit
    return table.reshape(t.shape[:-2] + table.shape)


def regenerate_position_ids(t: torch.Tensor, f, new, options) -> torch.Tensor:
    rows = f.num_prefix_tokens + new[-2] * new[-1] + f.num_suffix_tokens
    ids = torch.arange(rows, dtype=t.dtype, device=t.device)
    return ids.reshape(t.shape[:-1] + (rows,)) if t.dim() > 1 else ids


def resample_video(t: torch.Tensor, f, new, options) -> torch.Tensor:
    old = (f.params["frames"],) + tuple(f.old_grid)
    rows = _grid_rows(t)
    out = transforms.resample_video_table(rows, old, new, num_prefix_tokens=f.num_prefix_tokens,
                                          mode=options["mode"], antialias=options["antialias"])
    return out.reshape(t.shape[:-2] + out.shape[-2:])


def resample_temporal(t: torch.Tensor, f, new, options) -> torch.Tensor:
    rows = _grid_rows(t)
    out = transforms.resample_temporal(rows, new[0], mode=f.params.get("temporal_mode", "nearest"))
    return out.reshape(t.shape[:-2] + out.shape[-2:])


def resize_rel_pos_bias(t: torch.Tensor, f, new, options) -> torch.Tensor:
    return transforms.resize_rel_pos_bias_table(t, f.old_grid, new, num_extra_rows=f.params.get("extra", 0),
                                                layout=f.params.get("table_layout", "rows"),
                                                method=f.params.get("method", "geometric"))


def regenerate_rel_pos_index(t: torch.Tensor, f, new, options) -> torch.Tensor:
    index = transforms.relative_position_index(new, class_token=f.params.get("class_token", False))
    return index.to(dtype=t.dtype, device=t.device)


def resize_rel_pos(t: torch.Tensor, f, new, options) -> torch.Tensor:
    return transforms.resize_rel_pos_1d(t, 2 * new[f.params["axis"]] - 1)


def resize_attention_biases(t: torch.Tensor, f, new, options) -> torch.Tensor:
    return transforms.resize_attention_biases(t, f.old_grid, new)


def resample_blocked(t: torch.Tensor, f, new, options) -> torch.Tensor:
    blocks = f.params["blocks"]
    per_side = math.isqrt(blocks)
    if new[0] != new[1] or new[0] % per_side:
        raise ValueError(f"{f.key}: NesT keeps {blocks} blocks per level, so the new {new[0]}x{new[1]} grid "
                         f"must be square and a multiple of {per_side}")
    return transforms.resize_blocked_pos_embed(t, blocks, new_block_tokens=(new[0] // per_side) ** 2)


def resize_patch_embed(t: torch.Tensor, f, new, options) -> torch.Tensor:
    if f.layout == "hwio":  # flax kernels [p_h, p_w, C_in, C_out]
        out = transforms.resample_patch_embed(t.permute(3, 2, 0, 1), new)
        return out.permute(2, 3, 1, 0).contiguous()
    return transforms.resample_patch_embed(t, new)


EXECUTORS = {
    "resample": resample_table,
    "regenerate_sincos": regenerate_sincos,
    "regenerate_position_ids": regenerate_position_ids,
    "resample_video": resample_video,
    "resample_temporal": resample_temporal,
    "resize_rel_pos_bias": resize_rel_pos_bias,
    "regenerate_rel_pos_index": regenerate_rel_pos_index,
    "resize_rel_pos": resize_rel_pos,
    "resize_attention_biases": resize_attention_biases,
    "resize_patch_embed": resize_patch_embed,
    "resample_blocked": resample_blocked,
}
