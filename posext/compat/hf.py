"""HF transformers ``interpolate_pos_encoding`` (size-based, ``torch_int``) as one pure function.

Reproduces transformers 5.23 (huggingface/transformers ``models/<m>/modeling_<m>.py``):

- ViT (``ViTEmbeddings``) and CLIP (``CLIPVisionEmbeddings``, pass ``position_embedding.weight[None]``):
  defaults -- bicubic, align_corners=False, no antialias, no upcast;
- Dinov2 (``Dinov2Embeddings``): ``upcast=True``;
- Dinov2WithRegisters (``Dinov2WithRegistersEmbeddings``): ``upcast=True, antialias=True`` (registers are
  concatenated after the position embedding is added, so the table still has exactly one class token).

All use ``size=(height // patch_h, width // patch_w)`` (no +0.1 offset) from a square grid, with one class
token copied unchanged.
"""
from typing import Tuple, Union

import torch

from ._common import pair, resample_tokens


def interpolate_pos_encoding(position_embeddings: torch.Tensor, height: int, width: int,
                             patch_size: Union[int, Tuple[int, int]], *, antialias: bool = False,
                             upcast: bool = False, always_interpolate: bool = False,
                             num_prefix_tokens: int = 1) -> torch.Tensor:
    """HF ``interpolate_pos_encoding(embeddings, height, width)`` with the module state passed in.

    Args:
        position_embeddings: ``[1, 1 + N, C]`` (or ``[1 + N, C]``), N a square.
        height, width: pixel size of the input image.
        patch_size: int or ``(patch_h, patch_w)``.
        antialias: Dinov2WithRegisters.
        upcast: interpolate the grid in float32 and cast back to the table's dtype (Dinov2, registers too).
        always_interpolate: skip the early return, as HF does under ``torch.jit.trace``.
        num_prefix_tokens: 1 (class token) for all of the above; 0 for SigLIP (``SiglipVisionEmbeddings``).

    Returns ``position_embeddings`` itself when the patch count ``(height // p_h) * (width // p_w)`` (HF:
    ``embeddings.shape[1] - 1``, the same for a conv patch embedding) equals N and ``height == width``.
    """
    patch_h, patch_w = pair(patch_size)
    new_height = height // patch_h
    new_width = width // patch_w
    num_positions = position_embeddings.shape[-2] - num_prefix_tokens
    if (not always_interpolate and not torch.jit.is_tracing() and new_height * new_width == num_positions
            and height == width):
        return position_embeddings
    side = int(num_positions ** 0.5)
    return resample_tokens(position_embeddings, (new_height, new_width), old_size=(side, side),
                           num_prefix_tokens=num_prefix_tokens, mode="bicubic", antialias=antialias,
                           align_corners=False, upcast=upcast)


__all__ = ["interpolate_pos_encoding"]
