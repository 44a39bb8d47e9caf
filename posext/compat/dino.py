"""DINO v1 and DINOv2 ``VisionTransformer.interpolate_pos_encoding`` as pure functions.

Reproduces facebookresearch/dino @7c446df ``vision_transformer.py`` and facebookresearch/dinov2 @b8931f7
``dinov2/models/vision_transformer.py``. The methods read ``self.pos_embed`` ([1, 1 + N, C]; pass it as
``pos_embed``), the patch size, and for DINOv2 ``interpolate_offset`` / ``interpolate_antialias``; their
arguments are ``x`` (the tokens ``[B, 1 + npatch, C]`` after the class token is prepended; an int ``npatch``
is accepted instead) and ``w, h``.

Naming as in the originals: the callers do ``B, nc, w, h = x.shape``, so ``w`` is image dim 2 (the height,
rows) and ``h`` dim 3 (the width, columns); ``w // patch_size`` becomes the number of output *rows*. The
result is correct for non-square images, only the names are swapped.
"""
import math
from typing import Union

import torch

from ..resample import resample
from ._common import resample_tokens

Tokens = Union[torch.Tensor, int]


def _npatch(x: Tokens) -> int:
    return x.shape[1] - 1 if isinstance(x, torch.Tensor) else int(x)


def dino_interpolate_pos_encoding(pos_embed: torch.Tensor, x: Tokens, w: int, h: int,
                                  patch_size: int) -> torch.Tensor:
    """DINO v1: bicubic ``scale_factor=((w0 + 0.1) / sqrt(N), (h0 + 0.1) / sqrt(N))``, w0 = w // patch_size.

    Returns ``pos_embed`` itself when ``npatch == N and w == h``. No antialias, align_corners False, no
    float32 upcast (float16 / bfloat16 are nevertheless computed in float32 by posext); the class token is
    copied. Raises AssertionError, as DINO does, if the offset scale does not give ``w0 x h0``.
    """
    npatch = _npatch(x)
    n = pos_embed.shape[1] - 1
    if npatch == n and w == h:
        return pos_embed
    w0 = w // patch_size
    h0 = h // patch_size
    # the +0.1 keeps floor(M * s) from falling one short through float error (dino#8)
    w0, h0 = w0 + 0.1, h0 + 0.1
    sqrt_n = math.sqrt(n)
    side = int(sqrt_n)
    scale = (w0 / sqrt_n, h0 / sqrt_n)
    out = resample_tokens(pos_embed, old_size=(side, side), num_prefix_tokens=1, mode='bicubic',
                          antialias=False, align_corners=False, scale_factor=scale)
    assert int(w0) == _rows(side, scale[0]) and int(h0) == _rows(side, scale[1])
    return out


def dinov2_interpolate_pos_encoding(pos_embed: torch.Tensor, x: Tokens, w: int, h: int, patch_size: int,
                                    interpolate_offset: float = 0.1,
                                    interpolate_antialias: bool = False) -> torch.Tensor:
    """DINOv2: bicubic in float32, cast to ``x.dtype`` (``pos_embed.dtype`` if ``x`` is an int).

    ``interpolate_offset`` truthy: ``scale_factor=((w0 + off) / M, (h0 + off) / M)`` (hub default 0.1);
    0 / None: ``size=(w0, h0)`` (the ``*_reg`` pretrain configs, which also set ``interpolate_antialias``).
    Returns ``pos_embed`` itself (not cast) when ``npatch == N and w == h``. The class token goes through
    float32 and the output cast as in DINOv2. Asserts ``N == M * M`` and the output grid ``(w0, h0)``.
    """
    previous_dtype = x.dtype if isinstance(x, torch.Tensor) else pos_embed.dtype
    npatch = _npatch(x)
    n = pos_embed.shape[1] - 1
    if npatch == n and w == h:
        return pos_embed
    pos_embed = pos_embed.float()
    w0 = w // patch_size
    h0 = h // patch_size
    m = int(math.sqrt(n))
    assert n == m * m
    kwargs = dict(old_size=(m, m), num_prefix_tokens=1, mode="bicubic", antialias=bool(interpolate_antialias),
                  align_corners=False)
    if interpolate_offset:
        sx = float(w0 + interpolate_offset) / m
        sy = float(h0 + interpolate_offset) / m
        out = resample(pos_embed, scale_factor=(sx, sy), **kwargs)
        assert (w0, h0) == (_rows(m, sx), _rows(m, sy))
    else:
        out = resample(pos_embed, (w0, h0), **kwargs)
    return out.to(previous_dtype)


def _rows(m: int, scale: float) -> int:
    """Output size of F.interpolate(scale_factor=scale) along a dim of size m."""
    return math.floor(float(m) * scale)


__all__ = ["dino_interpolate_pos_encoding", "dinov2_interpolate_pos_encoding"]
