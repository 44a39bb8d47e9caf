"""timm ``layers/pos_embed.py`` drop-ins: ``resample_abs_pos_embed`` and ``resample_abs_pos_embed_nhwc``.

Reproduces timm 1.0.31 (PyPI; huggingface/pytorch-image-models): same signatures and defaults, grid
interpolated in float32 (float64 too) and cast back to the input dtype, prefix tokens kept bit for bit,
``align_corners=None`` meaning False (F.interpolate's default), and the early-outs (skipped while exporting)
that return the input object itself. The interpolation runs through ``posext.resample``.

The early-out is the 1.0.31 one, not the old (<= aa4b585) bug that returned the input whenever the token
count matched and the new grid was square: a non-square ``old_size`` such as (2, 8) -> (4, 4) is resampled.
Beyond timm: a batch of B > 1 tables is resampled row by row (timm reshapes to a batch of one), an int
``new_size`` means a square grid, and a 3-D ``[H, W, C]`` NHWC input comes back ``[1, H', W', C]`` as in timm.
"""
import logging
import math
from typing import List, Optional

import torch

from ._common import is_exporting, pair, resample_tokens

_logger = logging.getLogger(__name__)


def resample_abs_pos_embed(
        posemb: torch.Tensor,
        new_size: List[int],
        old_size: Optional[List[int]] = None,
        num_prefix_tokens: int = 1,
        interpolation: str = 'bicubic',
        antialias: bool = True,
        verbose: bool = False,
        align_corners: Optional[bool] = None,
):
    """timm 1.0.31 ``resample_abs_pos_embed``: ``[B, P + N, C]`` -> ``[B, P + H' * W', C]``.

    Returns ``posemb`` itself when the token count is unchanged and either ``old_size == new_size`` or
    no ``old_size`` was given and the new grid is square (never while exporting). ``old_size`` defaults to
    the square ``int(sqrt(N))`` grid.
    """
    new_hw = pair(new_size)
    num_pos_tokens = posemb.shape[-2]
    num_new_tokens = new_hw[0] * new_hw[1] + num_prefix_tokens
    if not is_exporting() and num_new_tokens == num_pos_tokens:
        if old_size is not None and old_size[0] == new_hw[0] and old_size[1] == new_hw[1]:
            return posemb
        if old_size is None and new_hw[0] == new_hw[1]:
            return posemb

    if old_size is None:
        hw = int(math.sqrt(num_pos_tokens - num_prefix_tokens))
        old_size = hw, hw

    out = resample_tokens(posemb, new_hw, old_size=pair(old_size), num_prefix_tokens=num_prefix_tokens,
                          mode=interpolation, antialias=antialias, align_corners=align_corners, upcast=True)

    if not torch.jit.is_scripting() and verbose:
        _logger.info(f'Resized position embedding: {old_size} to {new_size}.')
    return out


def resample_abs_pos_embed_nhwc(
        posemb: torch.Tensor,
        new_size: List[int],
        interpolation: str = 'bicubic',
        antialias: bool = True,
        verbose: bool = False,
):
    """timm 1.0.31 ``resample_abs_pos_embed_nhwc``: ``[1, H, W, C]`` (or ``[H, W, C]``) -> ``[1, H', W', C]``.

    Returns ``posemb`` itself when ``(H, W) == new_size`` (never while exporting); no align_corners (False).
    """
    new_hw = pair(new_size)
    if not is_exporting() and new_hw[0] == posemb.shape[-3] and new_hw[1] == posemb.shape[-2]:
        return posemb

    grid = posemb.unsqueeze(0) if posemb.dim() == 3 else posemb
    out = resample_tokens(grid, new_hw, mode=interpolation, antialias=antialias, align_corners=None,
                          upcast=True)

    if not torch.jit.is_scripting() and verbose:
        # timm logs the resized shape on both sides of the message; kept for identical logs.
        _logger.info(f'Resized position embedding: {out.shape[-3:-1]} to {new_size}.')
    return out


__all__ = ["resample_abs_pos_embed", "resample_abs_pos_embed_nhwc"]
