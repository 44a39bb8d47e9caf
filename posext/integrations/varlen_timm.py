"""timm NaFlexViT on ``posext.resample_varlen`` (used by ``timm.accelerate``).

``NaFlexEmbeds`` with a learned ``pos_embed`` ([1, H, W, C]) in a NaFlex batch (``patch_coord`` given):

* ``_apply_learned_naflex_pos_embed`` (the default): every image's grid (h, w) is its largest patch
  coordinate + 1; the table (as float32) is resized to it with the module's ``pos_embed_interp_mode``,
  ``pos_embed_antialias`` and ``pos_embed_align_corners`` and its rows added, in row-major order, to the
  image's first h*w tokens (padding tokens after them get nothing); the table itself at the stored grid. With
  ``pos_embed_ar_preserving`` the table is resized to (L, L), L = max(h, w), and its top-left (h, w) corner
  used. Patched: one padded ``resample_varlen`` call (grids (h, w), or (L, L) and then the corner rows
  gathered), added in place as timm does. Equal to timm's own route up to float rounding.
* ``_apply_learned_naflex_pos_embed_grid_sample`` (``pos_embed_use_grid_sample=True``): timm samples the
  table at every patch coordinate with ``F.grid_sample`` -- the same source coordinates as the interpolate
  route, but never antialiased, so a downsized grid aliases. Only with ``naflex_exact=True`` is it replaced:
  each token gets the row of its coordinate in the ``resample_varlen`` grid, i.e. the interpolate route's
  (antialiased, when ``pos_embed_antialias``) values. That changes results by design; off by default.
"""
from typing import List

import torch
from torch import nn

from ..varlen import resample_varlen


def _naflex_embeds_cls():
    try:
        from timm.models.naflexvit import NaFlexEmbeds
    except ImportError:  # pragma: no cover - older timm
        return None
    return NaFlexEmbeds


def _grids(patch_coord: torch.Tensor) -> torch.Tensor:
    """[B, N, 2] (y, x) coordinates -> [B, 2] (h, w) grids, on the CPU."""
    return (patch_coord.amax(dim=1) + 1).to("cpu", torch.int64)


def _resampled(self, grids: torch.Tensor, **kwargs) -> torch.Tensor:
    return resample_varlen(self.pos_embed.float(), grids, mode=self.pos_embed_interp_mode,
                           antialias=self.pos_embed_antialias, align_corners=self.pos_embed_align_corners,
                           **kwargs)


def _corner_index(grids: List[List[int]], square: List[int], max_length: int) -> torch.Tensor:
    """Row index into the packed (L, L) grids of every image's top-left (h, w) corner, padded to max_length
    with the index of an extra zero row (the last)."""
    total = sum(s * s for s in square)
    out = torch.full((len(grids), max_length), total, dtype=torch.int64)
    start = 0
    for i, ((h, w), side) in enumerate(zip(grids, square)):
        rows = torch.arange(h)[:, None] * side + torch.arange(w)[None, :] + start
        out[i, : h * w] = rows.reshape(-1)
        start += side * side
    return out


def _apply_naflex(self, x: torch.Tensor, patch_coord: torch.Tensor) -> None:
    """``NaFlexEmbeds._apply_learned_naflex_pos_embed`` on one ``resample_varlen`` call (adds into x)."""
    grids = _grids(patch_coord)
    n = x.shape[1]
    if int((grids[:, 0] * grids[:, 1]).max()) > n:  # a grid longer than the batch: timm's own truncation
        return type(self)._apply_learned_naflex_pos_embed(self, x, patch_coord)
    if self.pos_embed_ar_preserving:
        side = grids.amax(dim=1)
        packed = _resampled(self, torch.stack([side, side], dim=1))
        packed = torch.cat([packed, packed.new_zeros(1, packed.shape[-1])])
        index = _corner_index(grids.tolist(), side.tolist(), n).to(x.device)
        table = packed[index]
    else:
        table = _resampled(self, grids, max_length=n)
    x.add_(table.to(x.dtype))


def _apply_naflex_grid_sample(self, x: torch.Tensor, patch_coord: torch.Tensor) -> None:
    """The grid_sample route replaced by the interpolate route's rows at each token's coordinate."""
    grids = _grids(patch_coord)
    if self.pos_embed_ar_preserving:
        side = grids.amax(dim=1)
        grids = torch.stack([side, side], dim=1)
    packed = _resampled(self, grids)
    lengths = grids[:, 0] * grids[:, 1]
    starts = (torch.cumsum(lengths, 0) - lengths).to(patch_coord.device)
    coord = patch_coord.to(torch.int64)
    index = coord[..., 0] * grids[:, 1, None].to(coord.device) + coord[..., 1] + starts[:, None]
    x += packed[index].to(x.dtype)


def targets(model: nn.Module, naflex_exact: bool = False):
    """(module, method name, replacement) for the NaFlexEmbeds in ``model`` whose methods are timm's."""
    cls = _naflex_embeds_cls()
    if cls is None:
        return []
    names = [("_apply_learned_naflex_pos_embed", _apply_naflex)]
    if naflex_exact:
        names.append(("_apply_learned_naflex_pos_embed_grid_sample", _apply_naflex_grid_sample))
    return [(m, name, fn) for m in model.modules() if isinstance(m, cls)
            for name, fn in names if getattr(type(m), name) is getattr(cls, name)]
