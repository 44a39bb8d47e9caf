"""Variable-resolution Hugging Face vision towers on ``posext.resample_varlen`` (used by ``hf.accelerate``).

* SigLIP2 NaFlex (``Siglip2VisionEmbeddings``): ``resize_positional_embeddings`` resizes the stored square
  grid to every image's ``spatial_shapes`` (bilinear, ``antialias=True``, ``align_corners=False``, computed in
  float32 on the CPU, then cast back) and pads to ``max_length`` with each image's first row. Patched: one
  padded ``resample_varlen`` call, its zero padding replaced by that first row.
* Qwen3-VL (``Qwen3VLVisionModel``): ``forward`` gathers a weighted sum of ``pos_embed`` rows per patch
  (bilinear, ``align_corners=True``, spatial-merge-block order, t frames repeating the grid; the weights in
  float32, so a half-precision table is summed in float32). Patched: the same rows from one packed
  ``resample_varlen(merge_size=spatial_merge_size)`` call (on a float32 copy of a half-precision table); the
  model's forward then runs unchanged with those rows as a one-row-per-patch gather table (``pos_embed``'s
  ``forward`` is swapped for that gather for the length of the call, so one model instance should not run
  patched forwards from two threads at once, and hooks on ``pos_embed`` see the gather's indices). HF computes
  its taps' source coordinates and weights in float32, ``F.interpolate`` its own way: the two agree to float32
  rounding of the coordinates (|diff| up to ~5e-6 x the table's scale for a 48 x 48 table), exactly in
  float64. A caller's precomputed ``interp_indices`` / ``interp_weights`` are used as given.
"""
import contextlib
import importlib

import torch
import torch.nn.functional as F
from torch import nn

from ..varlen import resample_varlen

_LOW = (torch.float16, torch.bfloat16)


def _find(module: str, name: str):
    try:
        return getattr(importlib.import_module(f"transformers.models.{module}.modeling_{module}"), name)
    except (ImportError, AttributeError):
        return None


def _siglip2_resize(self, positional_embeddings: torch.Tensor, spatial_shapes: torch.Tensor,
                    max_length: int) -> torch.Tensor:
    """``Siglip2VisionEmbeddings.resize_positional_embeddings`` ([H, W, C] table) in one call."""
    dtype = positional_embeddings.dtype
    table = positional_embeddings.unsqueeze(0)  # NHWC [1, H, W, C]
    if table.device.type == "cpu":
        table = table.float()
    sizes = spatial_shapes.to(torch.int64)
    out = resample_varlen(table, sizes, mode="bilinear", antialias=True, align_corners=False,
                          max_length=max_length).to(dtype)
    lengths = (sizes[:, 0] * sizes[:, 1]).to(out.device)
    padding = torch.arange(max_length, device=out.device)[None, :] >= lengths[:, None]
    return torch.where(padding[..., None], out[:, :1], out)


class _GatherTable:
    """Stands in for ``pos_embed.forward`` during one patched forward: index -> row of ``rows``."""

    def __init__(self, rows: torch.Tensor):
        self.rows = rows

    def __call__(self, indices: torch.Tensor) -> torch.Tensor:
        return F.embedding(indices, self.rows)


@contextlib.contextmanager
def _forward_as(module: nn.Module, fn):
    had = "forward" in module.__dict__
    saved = module.__dict__.get("forward")
    object.__setattr__(module, "forward", fn)
    try:
        yield
    finally:
        if had:
            object.__setattr__(module, "forward", saved)
        else:
            del module.__dict__["forward"]


def _qwen3_vl_forward(self, hidden_states: torch.Tensor, grid_thw: torch.Tensor, **kwargs):
    """``Qwen3VLVisionModel.forward`` with its position rows from ``resample_varlen``."""
    if "interp_indices" in kwargs or "interp_weights" in kwargs:  # the caller's own gather: theirs
        return type(self).forward(self, hidden_states, grid_thw, **kwargs)
    table = self.pos_embed.weight
    if table.dtype in _LOW:
        table = table.float()
    side = self.num_grid_per_side
    rows = resample_varlen(table[: side * side], grid_thw, old_size=(side, side),
                           mode=self.interpolation_mode, align_corners=self.interpolation_align_corners,
                           merge_size=self.spatial_merge_size)
    n = rows.shape[0]
    indices = torch.arange(n, device=rows.device)[:, None]
    weights = torch.ones(n, 1, device=rows.device, dtype=rows.dtype)
    with _forward_as(self.pos_embed, _GatherTable(rows)):
        return type(self).forward(self, hidden_states, grid_thw, interp_indices=indices,
                                  interp_weights=weights, **kwargs)


def targets(model: nn.Module):
    """(module, method name, replacement) for the variable-resolution towers in ``model``."""
    known = []
    siglip2 = _find("siglip2", "Siglip2VisionEmbeddings")
    if siglip2 is not None:
        known.append((siglip2, "resize_positional_embeddings", _siglip2_resize))
    qwen3 = _find("qwen3_vl", "Qwen3VLVisionModel")
    if qwen3 is not None:
        known.append((qwen3, "forward", _qwen3_vl_forward))
    found = []
    for module in model.modules():
        for cls, name, replacement in known:
            if isinstance(module, cls) and getattr(type(module), name) is getattr(cls, name):
                found.append((module, name, replacement))
    return found
