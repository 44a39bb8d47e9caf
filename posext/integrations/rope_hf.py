"""Hugging Face vision RoPE on ``posext.apply_rope`` (used by ``hf.accelerate``): the Qwen2-VL, Qwen2.5-VL and
Qwen3-VL vision towers and DINOv3 ViT.

Each of these models computes one (cos, sin) table pair per forward, hands it to every attention block
(Qwen2.5-VL first permutes its rows into window order), and each block rotates q and k from the tables in
several eager passes. Patched, the model's rotary module hands the blocks ``(positions, inv_freq rows)`` in
the tables' place: positions ``[N, 2]`` in the model's own (row, column) order and the per-pair inverse
frequencies repeated per row ``[N, head_dim/4]`` (row-shaped, so the window permutation applies to them as it
did to the tables). The module's rotation function (``apply_rotary_pos_emb_vision`` / DINOv3's
``apply_rotary_pos_emb``) is replaced by one that recognises that pair (its last size is not head_dim) and
rotates q and k in one fused call, angles recomputed in float32 as the tables were; a real table pair goes to
the model's function unchanged, so other instances of the family are not affected. Recipes: Qwen-VL towers
(half pairs) angle = h * w_k on pairs [0, D/4) and w * w_k on [D/4, D/2); DINOv3 the same with its
patch-centre coordinates in (-1, 1) and 2 pi w_k, prefix tokens (class, registers) unrotated. Calling the
patched rotary module directly returns that pair, not tables.
"""
import importlib
import math

import torch
from torch import nn

from ..rope_axes import apply_rope

_REPLACED = "_posext_original"
_ROTATION = {"qwen2_vl": "apply_rotary_pos_emb_vision", "qwen2_5_vl": "apply_rotary_pos_emb_vision",
             "qwen3_vl": "apply_rotary_pos_emb_vision", "dinov3_vit": "apply_rotary_pos_emb"}
_ROTARY = {"qwen2_vl": "Qwen2VLVisionRotaryEmbedding", "qwen2_5_vl": "Qwen2_5_VLVisionRotaryEmbedding",
           "qwen3_vl": "Qwen3VLVisionRotaryEmbedding", "dinov3_vit": "DINOv3ViTRopePositionEmbedding"}


def _module(family):
    try:
        return importlib.import_module(f"transformers.models.{family}.modeling_{family}")
    except ImportError:
        return None


def _axial_freqs(inv_freq_rows: torch.Tensor) -> torch.Tensor:
    """[2, 1, D/2] axial frequencies (axis 0 on the first D/4 pairs) from [N, D/4] repeated rows."""
    w = inv_freq_rows[0]
    zero = torch.zeros_like(w)
    return torch.stack([torch.cat([w, zero]), torch.cat([zero, w])]).unsqueeze(1)


def _is_pair(q, cos, sin):
    return cos.shape[-1] == 2 and sin.shape[-1] != q.shape[-1] and 4 * sin.shape[-1] == q.shape[-1]


def _fused_vision(original):
    """``apply_rotary_pos_emb_vision(q, k, cos, sin)``: q, k packed [T, heads, D]."""
    def rotate(q, k, cos, sin):
        if not _is_pair(q, cos, sin):
            return original(q, k, cos, sin)
        if q.shape[0] == 0:
            return q.clone(), k.clone()
        rq, rk = apply_rope(q.unsqueeze(0), k.unsqueeze(0), cos.float(), _axial_freqs(sin.float()),
                            pair_layout="half", layout="bnhd")
        return rq[0], rk[0]
    rotate.__dict__[_REPLACED] = original
    return rotate


def _fused_dinov3(original):
    """DINOv3's ``apply_rotary_pos_emb(q, k, cos, sin)``: q, k [B, heads, N, D], the last rows patches."""
    def rotate(q, k, cos, sin, **kwargs):
        if not _is_pair(q, cos, sin):
            return original(q, k, cos, sin, **kwargs)
        return apply_rope(q, k, cos.float(), _axial_freqs(sin.float()), pair_layout="half")
    rotate.__dict__[_REPLACED] = original
    return rotate


def _qwen_rotary_forward(self, x, position_ids):
    """The vision rotary module's forward: (positions [N, 2] = (h, w), inv_freq rows [N, D/4])."""
    if self.attention_scaling != 1.0:  # scaled tables: the model's own
        return type(self).forward(self, x, position_ids)
    positions = position_ids.to(device=x.device, dtype=torch.float32)  # [N, 2]: (h, w) per token
    inv_freq = self.inv_freq.to(device=x.device, dtype=torch.float32)
    return positions, inv_freq.expand(positions.shape[0], -1)


def _dinov3_rope_forward(self, pixel_values):
    """``DINOv3ViTRopePositionEmbedding.forward``: (patch-centre coordinates [N, 2] = (row, column),
    2 pi inv_freq rows [N, D/4]), the training-time augmentation applied as the model applies it."""
    hf = _module("dinov3_vit")
    patch = self.config.patch_size
    ph, pw = (patch, patch) if isinstance(patch, int) else tuple(patch)
    height, width = pixel_values.shape[-2:]
    coords = hf.get_patches_center_coordinates(height // ph, width // pw, dtype=torch.float32,
                                               device=pixel_values.device)
    if self.training:
        coords = hf.augment_patches_center_coordinates(coords, shift=self.config.pos_embed_shift,
                                                       jitter=self.config.pos_embed_jitter,
                                                       rescale=self.config.pos_embed_rescale)
    inv_freq = 2 * math.pi * self.inv_freq.to(device=coords.device, dtype=torch.float32)
    return coords, inv_freq.expand(coords.shape[0], -1)


def _install_rotation(family):
    """Replaces the family's module-level rotation function by the dispatching one (once)."""
    mod = _module(family)
    name = _ROTATION[family]
    current = getattr(mod, name)
    if _REPLACED not in current.__dict__:
        wrap = _fused_dinov3 if family == "dinov3_vit" else _fused_vision
        setattr(mod, name, wrap(current))


def targets(model: nn.Module):
    """(module, method name, replacement) for the vision rotary modules in ``model``; installs the
    dispatching rotation function of each family found."""
    found = []
    for family, cls_name in _ROTARY.items():
        mod = _module(family)
        cls = getattr(mod, cls_name, None) if mod is not None else None
        if cls is None or not hasattr(mod, _ROTATION[family]):
            continue
        replacement = _dinov3_rope_forward if family == "dinov3_vit" else _qwen_rotary_forward
        hits = [m for m in model.modules() if isinstance(m, cls) and type(m).forward is cls.forward]
        if hits:
            _install_rotation(family)
        found += [(m, "forward", replacement) for m in hits]
    return found


__all__ = ["targets"]
