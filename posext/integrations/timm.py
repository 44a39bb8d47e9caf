"""posext for timm Vision Transformers: ``accelerate(model)`` / ``unpatch(model)``.

Patches ``_pos_embed`` of every ``timm.models.vision_transformer.VisionTransformer`` (ViT, DeiT-3,
DINOv2-style register models, ...), ``timm.models.deit.VisionTransformerDistilled`` (DeiT with a distillation
token) and ``timm.models.eva.Eva`` (EVA-02 and friends; its RoPE table and patch dropout stay timm's) inside
``model``. With ``dynamic_img_size=True`` timm resamples ``pos_embed`` on every forward; patched:
  * without gradients (eval under ``torch.no_grad()`` / ``inference_mode``, frozen embedding), the resized
    table comes from a per-model ``PosEmbedCache`` (one resample per resolution, invalidated when the
    parameter changes);
  * with gradients (training), ``posext.add_pos_embed`` resamples and adds in one differentiable op, without
    storing the resized table.
Numerics are timm 1.0.31's ``resample_abs_pos_embed``: bicubic, ``antialias=True``, float32, prefix tokens
(``num_prefix_tokens``, or none with ``no_embed_class``) kept apart, the unresized table itself at the native
grid; then timm's own token order (class, registers / distillation, patches) and add-then-concat or
concat-then-add as ``no_embed_class`` says. Subclasses that override ``_pos_embed`` otherwise are left alone.

NaFlexViT (``timm.models.naflexvit.NaFlexEmbeds``): in a NaFlex batch its learned table is resized to every
image's grid by one ``posext.resample_varlen`` call; ``naflex_exact=True`` also replaces the ``grid_sample``
route (which never antialiases) with those rows, changing its results by design. See
:mod:`posext.integrations.varlen_timm`.
"""
from typing import Optional, Sequence

import torch
from torch import nn

from ..cache import PosEmbedCache
from ..compat.timm import resample_abs_pos_embed
from ..resample import add_pos_embed
from . import varlen_timm
from ._patching import cache_of, patch_all, unpatch_modules


def _timm_classes():
    try:
        from timm.models.deit import VisionTransformerDistilled
        from timm.models.vision_transformer import VisionTransformer
    except ImportError as e:  # pragma: no cover - timm is an optional dependency
        raise ImportError("posext.integrations.timm needs timm installed") from e
    return VisionTransformer, VisionTransformerDistilled


def resized_pos_embed(vit: nn.Module, new_size: Sequence[int]) -> torch.Tensor:
    """``vit.pos_embed`` resized to the patch grid ``new_size`` (H, W) exactly as timm's ``_pos_embed``
    does."""
    prefix = 0 if vit.no_embed_class else vit.num_prefix_tokens
    old = (int(vit.patch_embed.grid_size[0]), int(vit.patch_embed.grid_size[1]))
    new = (new_size[0], new_size[1])

    def compute(pos_embed):
        return resample_abs_pos_embed(pos_embed, new_size=new, old_size=old, num_prefix_tokens=prefix)

    cache = cache_of(vit)
    if not cache.usable(vit.pos_embed):  # the key's int() would pin a traced size to one value
        return compute(vit.pos_embed)
    return cache.get(vit.pos_embed, ("timm", tuple(int(s) for s in new), old, prefix), compute)


def _prefix_tokens(vit: nn.Module, batch: int):
    _, distilled_cls = _timm_classes()
    if isinstance(vit, distilled_cls):
        tokens = [vit.cls_token, vit.dist_token]
    else:
        tokens = [t for t in (vit.cls_token, getattr(vit, "reg_token", None)) if t is not None]
    return [t.expand(batch, -1, -1) for t in tokens]


def _add_positions(self, x: torch.Tensor) -> torch.Tensor:
    """Patch tokens ``[B, H, W, C]`` (dynamic size) or ``[B, N, C]`` -> prefix tokens + patches with the
    position table added, in timm's order (add-then-concat with ``no_embed_class``, else concat-then-add). The
    resized table comes from the cache, or is added by the fused op when gradients flow."""
    batch = x.shape[0]
    to_cat = _prefix_tokens(self, batch)
    pos_embed, fused_size = self.pos_embed, None
    if self.dynamic_img_size:
        _, height, width, channels = x.shape
        x = x.view(batch, -1, channels)
        old = tuple(self.patch_embed.grid_size)
        # timm's early return at the native grid hands back the table itself. A traced graph takes no such
        # branch (it would guard on the traced size): resampling to the same grid returns the table exactly.
        if pos_embed is None or (not torch.compiler.is_compiling() and (height, width) == (old[0], old[1])):
            pass
        elif cache_of(self).usable(self.pos_embed) or x.dtype != self.pos_embed.dtype:
            pos_embed = resized_pos_embed(self, (height, width))
        else:  # gradients flow: resample and add in one op, the resized table never stored
            fused_size = (height, width)
    if self.no_embed_class:
        x = _add(self, x, pos_embed, fused_size, 0)
        if to_cat:
            x = torch.cat(to_cat + [x], dim=1)
    else:
        if to_cat:
            x = torch.cat(to_cat + [x], dim=1)
        x = _add(self, x, pos_embed, fused_size, self.num_prefix_tokens)
    return x


def _add(vit, tokens, pos_embed, fused_size, prefix):
    if fused_size is not None:
        return add_pos_embed(tokens, vit.pos_embed, fused_size, old_size=tuple(vit.patch_embed.grid_size),
                             num_prefix_tokens=prefix, mode="bicubic", antialias=True)
    return tokens if pos_embed is None else tokens + pos_embed


def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
    """timm ``VisionTransformer._pos_embed`` (and DeiT's) with posext's resize."""
    if self.pos_embed is None:
        return type(self)._pos_embed(self, x)
    return self.pos_drop(_add_positions(self, x))


def _eva_pos_embed(self, x: torch.Tensor):
    """timm ``Eva._pos_embed`` with posext's resize; the RoPE table and patch dropout are timm's own."""
    from timm.layers import apply_keep_indices_nlc

    grid = (x.shape[1], x.shape[2]) if self.dynamic_img_size else None
    rot_pos_embed = None
    if self.rope is not None:
        if grid is not None:
            rot_pos_embed = self.rope.get_embed(shape=grid)
        elif hasattr(self.rope, "feat_shape"):
            rot_pos_embed = self.rope.get_embed()
        else:
            rot_pos_embed = self.rope.get_embed(shape=self.patch_embed.grid_size)
    x = self.pos_drop(_add_positions(self, x))
    if self.patch_drop is not None:
        x, keep_indices = self.patch_drop(x)
        if rot_pos_embed is not None and keep_indices is not None:
            rot_pos_embed = apply_keep_indices_nlc(x, rot_pos_embed, keep_indices)
            if getattr(self, "rope_mixed", False):
                rot_pos_embed = rot_pos_embed.transpose(0, 1)  # [B, depth, ...] -> [depth, B, ...]
            else:
                rot_pos_embed = rot_pos_embed.unsqueeze(1)  # head axis for axial RoPE
    return x, rot_pos_embed


def _targets(model: nn.Module):
    """(module, replacement) for every timm ViT / DeiT-distilled / EVA whose _pos_embed is the one stated
    here."""
    vit_cls, distilled_cls = _timm_classes()
    known = {vit_cls._pos_embed: _pos_embed, distilled_cls._pos_embed: _pos_embed}
    try:
        from timm.models.eva import Eva

        known[Eva._pos_embed] = _eva_pos_embed
    except ImportError:  # pragma: no cover - older timm
        pass
    return [(m, known[type(m)._pos_embed]) for m in model.modules()
            if hasattr(m, "pos_embed") and hasattr(m, "patch_embed")
            and getattr(type(m), "_pos_embed", None) in known]


def accelerate(model: nn.Module, *, cache: Optional[PosEmbedCache] = None, max_entries: int = 8,
               naflex_exact: bool = False) -> nn.Module:
    """Patches every timm VisionTransformer / VisionTransformerDistilled / Eva / NaFlexEmbeds in ``model``
    (in place; returned).

    Each patched module gets its own ``PosEmbedCache(max_entries)`` unless ``cache`` is given (shared).
    ``naflex_exact=True`` also replaces NaFlexViT's ``grid_sample`` route with antialiased rows (different
    results by design). Raises TypeError when ``model`` contains no such module. Patching twice is a no-op.
    """
    targets = [(m, "_pos_embed", fn) for m, fn in _targets(model)]
    targets += varlen_timm.targets(model, naflex_exact=naflex_exact)
    return patch_all(model, targets, cache, max_entries, "timm VisionTransformer / Eva / NaFlexViT")


def unpatch(model: nn.Module) -> nn.Module:
    """Removes the patches (and caches) of ``accelerate``; the model is then exactly as before."""
    unpatch_modules(model)
    return model


def cache_stats(model: nn.Module):
    """``CacheStats`` of every patched module in ``model``, in module order."""
    return [cache_of(m).stats() for m, _ in _targets(model) if "_posext_cache" in m.__dict__]


__all__ = ["accelerate", "unpatch", "resized_pos_embed", "cache_stats"]
