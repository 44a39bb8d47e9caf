"""The paths the rope job's part 2 times for one model case: posext's recipe (``apply_rope`` with the
family's positions and frequencies), the family's own eager RoPE code in HF transformers, and a table-driven
rotation (flash-attn's eager fallback); see ``posext.bench.rope``."""
import importlib
import math

import torch

from .. import rope as posext_rope
from .. import rope_axes

# Qwen-VL: (transformers module, class prefix); grids are (t, h, w) in patches before the 2 x 2 merge.
# DINOv3: class + 4 register tokens.
QWEN = {"Qwen2-VL": ("qwen2_vl", "Qwen2VL"), "Qwen2.5-VL": ("qwen2_5_vl", "Qwen2_5_VL"),
        "Qwen3-VL": ("qwen3_vl", "Qwen3VL")}
DINOV3_PREFIX = 5


def _own(fn, library="transformers"):
    """``fn``, refused when it is not the library's own code (a patched class would time posext)."""
    if not getattr(fn, "__module__", "").startswith(library):
        raise RuntimeError(f"{getattr(fn, '__qualname__', fn)} comes from {fn.__module__}, not {library}: "
                           "not a baseline")
    return fn


def _table_rotation(angle, dtype, heads_axis):
    """flash-attn's eager rotary (``apply_rotary_emb_torch``, non-interleaved) from a table built once:
    cos and sin ``[N, R/2]`` in q's dtype; each call repeats them to ``[N, R]`` and rotates q and k.
    ``heads_axis``: q is [.., N, heads, D] (the table gets a heads axis) rather than [.., heads, N, D]."""
    cos_table, sin_table = angle.cos().to(dtype), angle.sin().to(dtype)

    def rotate(x, cos, sin):
        half = cos.shape[-1]
        cos, sin = torch.cat([cos, cos], -1), torch.cat([sin, sin], -1)
        if heads_axis:
            cos, sin = cos[:, None], sin[:, None]
        x1, x2 = x[..., :half], x[..., half:2 * half]
        out = x[..., :2 * half] * cos + torch.cat([-x2, x1], -1) * sin
        return out if 2 * half == x.shape[-1] else torch.cat([out, x[..., 2 * half:]], -1)

    return lambda q, k: (rotate(q, cos_table, sin_table), rotate(k, cos_table, sin_table))


def _angles(positions, freqs):
    """[M, R/2] angles of the table baseline, from posext's positions and shared frequencies."""
    angle = positions[:, :1] * freqs[0, 0]
    for axis in range(1, positions.shape[1]):
        angle = angle + positions[:, axis:axis + 1] * freqs[axis, 0]
    return angle


def _qwen_model(family, grid_thw, heads, head_dim, device):
    """The family's eager path from grid_thw to rotated q and k, or None without transformers."""
    try:
        name, prefix = QWEN[family]
        mod = importlib.import_module(f"transformers.models.{name}.modeling_{name}")
        config_cls = getattr(importlib.import_module(f"transformers.models.{name}.configuration_{name}"),
                             f"{prefix}VisionConfig")
        rotary_cls = getattr(mod, f"{prefix}VisionRotaryEmbedding")
        position_ids = getattr(mod, "get_vision_position_ids", None)
        if position_ids is None:
            from transformers.vision_utils import get_vision_position_ids as position_ids
    except (ImportError, AttributeError):
        return None
    width = heads * head_dim
    config = config_cls(hidden_size=width, embed_dim=width, num_heads=heads, depth=1, spatial_merge_size=2)
    rotary = _own(rotary_cls)(config).to(device)
    if 4 * rotary.inv_freq.numel() != head_dim:
        raise RuntimeError(f"{rotary_cls.__name__} gives {rotary.inv_freq.numel()} frequencies per axis, not "
                           f"head_dim / 4 = {head_dim // 4}")
    apply, position_ids = _own(mod.apply_rotary_pos_emb_vision), _own(position_ids)

    def model(q, k):  # what <Family>VisionModel.forward and each block's attention run
        cos, sin = rotary(q, position_ids(grid_thw, 2))
        return apply(q, k, cos, sin)
    return model


def _dinov3_model(grid, heads, head_dim, dtype, device):
    try:
        from transformers import DINOv3ViTConfig
        from transformers.models.dinov3_vit import modeling_dinov3_vit as hf
    except ImportError:
        return None
    config = DINOv3ViTConfig(hidden_size=heads * head_dim, num_attention_heads=heads, patch_size=16,
                             num_register_tokens=DINOV3_PREFIX - 1)
    rope = _own(hf.DINOv3ViTRopePositionEmbedding)(config).eval().to(device)
    apply = _own(hf.apply_rotary_pos_emb)
    pixels = torch.empty(1, 3, 16 * grid[0], 16 * grid[1], dtype=dtype, device=device)  # shape, dtype read

    def model(q, k):  # DINOv3ViTModel.forward's rope_embeddings, then each layer's attention
        cos, sin = rope(pixels)
        return apply(q, k, cos, sin)
    return model


def model_paths(family, grids, heads, head_dim, dtype, device="cpu", seed=0):
    """Everything part 2 times for one case: ``{"q", "k", "tokens", "posext", "rotate", "model", "table"}``,
    each path a function of (q, k) returning the rotated (q, k); ``model`` is None without transformers.
    q and k are views of a fused projection, as the models make them."""
    gen = torch.Generator().manual_seed(seed)
    if family in QWEN:
        grid_thw = torch.tensor(grids, dtype=torch.long, device=device)
        counts = grid_thw.prod(1)
        tokens = int(counts.sum())
        cu_seqlens = torch.nn.functional.pad(counts.cumsum(0), (1, 0)).to(torch.int32)
        freqs = posext_rope.rope_axial_freqs(head_dim, theta=10000.0, first_axis="y", device=device)
        positions = posext_rope.rope_positions(grid_thw, merge_size=2, device=device)
        qkv = torch.randn(tokens, 3, heads, head_dim, generator=gen).to(device=device, dtype=dtype)
        q, k = qkv[:, 0], qkv[:, 1]  # [T, heads, D], as the attention's qkv(...).reshape(T, 3, H, D)
        kwargs = {"pair_layout": "half", "cu_seqlens": cu_seqlens}

        def posext_fn(q, k):
            where = posext_rope.rope_positions(grid_thw, merge_size=2, device=device)
            return rope_axes.apply_rope(q, k, where, freqs, **kwargs)
        model = _qwen_model(family, grid_thw, heads, head_dim, device)
        table = _table_rotation(_angles(positions, freqs), dtype, heads_axis=True)
    else:
        (grid,) = grids
        tokens = DINOV3_PREFIX + grid[0] * grid[1]
        freqs = posext_rope.rope_axial_freqs(head_dim, theta=100.0, scale=2 * math.pi, first_axis="y",
                                             device=device)
        positions = posext_rope.rope_positions_2d(grid, mode="normalized", device=device)
        proj = torch.randn(1, tokens, 2, heads, head_dim, generator=gen).to(device=device, dtype=dtype)
        q, k = proj[:, :, 0].transpose(1, 2), proj[:, :, 1].transpose(1, 2)  # [1, heads, N, D] views
        kwargs = {"pair_layout": "half", "num_prefix_tokens": DINOV3_PREFIX}

        def posext_fn(q, k):
            where = posext_rope.rope_positions_2d(grid, mode="normalized", device=device)
            return rope_axes.apply_rope(q, k, where, freqs, **kwargs)
        model = _dinov3_model(grid, heads, head_dim, dtype, device)
        angle = torch.nn.functional.pad(_angles(positions, freqs), (0, 0, DINOV3_PREFIX, 0))  # prefix: 0
        table = _table_rotation(angle, dtype, heads_axis=False)
    return {"q": q, "k": k, "tokens": tokens, "posext": posext_fn, "model": model, "table": table,
            "rotate": lambda q, k: rope_axes.apply_rope(q, k, positions, freqs, **kwargs)}


__all__ = ["model_paths", "QWEN", "DINOV3_PREFIX"]
