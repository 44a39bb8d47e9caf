"""posext for open_clip vision towers: ``accelerate(model)`` / ``unpatch(model)``.

open_clip's ``VisionTransformer`` adds ``positional_embedding`` ([1 + N, C], one class token) as stored, so it
only runs at the resolution it was built for; changing resolution means rewriting the checkpoint with
``open_clip.resize_pos_embed`` (bicubic, ``antialias=True``, ``align_corners=False``, class token kept).
Patched (``_embeds`` of every ``open_clip.transformer.VisionTransformer`` in ``model``), a tower accepts any
image size whose sides are multiples of the patch size and resizes the table on the fly with those same
settings: from a per-tower ``PosEmbedCache`` where no gradient flows, through the fused
``posext.add_pos_embed`` in training. At the native grid it is exactly open_clip's own ``_embeds``. The
``sin_cos_2d`` table type is resized the same way (open_clip itself never resizes it).
"""
from typing import Optional

import torch
from torch import nn

from ..cache import PosEmbedCache
from ..compat._common import resample_tokens
from ..resample import add_pos_embed
from ._patching import cache_of, patch_all, unpatch_modules


def _vision_cls():
    try:
        from open_clip.transformer import VisionTransformer
    except ImportError as e:  # pragma: no cover - open_clip is an optional dependency
        raise ImportError("posext.integrations.open_clip needs open_clip_torch installed") from e
    return VisionTransformer


def _embeds(self, x: torch.Tensor) -> torch.Tensor:
    """open_clip's ``_embeds`` with the position table resized to the patch grid of ``x``."""
    x = self.conv1(x)  # [B, width, gh, gw]
    grid = (x.shape[-2], x.shape[-1])
    old = (int(self.grid_size[0]), int(self.grid_size[1]))
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    x = torch.cat([self.class_embedding.view(1, 1, -1).expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
    table = self.positional_embedding
    if grid == old:
        x = x + table.to(x.dtype)
    elif cache_of(self).usable(table):
        resized = cache_of(self).get(table, ("open_clip", grid, old), lambda t: _resize(t, grid, old))
        x = x + resized.to(x.dtype)
    else:
        x = add_pos_embed(x, table.to(x.dtype), grid, old_size=old, num_prefix_tokens=1, mode="bicubic",
                          antialias=True)
    x = self.patch_dropout(x)
    return self.ln_pre(x)


def _resize(table: torch.Tensor, grid, old) -> torch.Tensor:
    return resample_tokens(table, grid, old_size=old, num_prefix_tokens=1, mode="bicubic", antialias=True,
                           align_corners=False)


def accelerate(model: nn.Module, *, cache: Optional[PosEmbedCache] = None, max_entries: int = 8) -> nn.Module:
    """Patches every open_clip ``VisionTransformer`` in ``model`` (e.g. a CLIP model's ``visual``) in place.

    Raises TypeError when there is none. Patching twice is a no-op; ``unpatch`` restores the model exactly.
    """
    vision_cls = _vision_cls()
    targets = [m for m in model.modules()
               if isinstance(m, vision_cls) and type(m)._embeds is vision_cls._embeds]
    return patch_all(model, [(m, "_embeds", _embeds) for m in targets], cache, max_entries,
                     "open_clip VisionTransformer")


def unpatch(model: nn.Module) -> nn.Module:
    """Removes the patches (and caches) of ``accelerate``."""
    unpatch_modules(model)
    return model


__all__ = ["accelerate", "unpatch"]
