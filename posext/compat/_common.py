"""Private helpers shared by the compat modules: size pairs and ``posext.resample`` with a
peer's dtype policy."""
import collections.abc

import torch
import torch.nn.functional as F

from ..resample import MODES, resample

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def is_exporting() -> bool:
    """True inside ``torch.export`` (timm's ``is_exporting``: the compiler flag, False when scripting)."""
    if torch.jit.is_scripting():
        return False
    flag = getattr(torch.compiler, "is_exporting", None)
    return bool(flag()) if flag is not None else False


def pair(value):
    """An int ``n`` -> ``(n, n)``; any other iterable -> a tuple of its items."""
    if isinstance(value, collections.abc.Iterable):
        return tuple(value)
    return (value, value)


def resample_tokens(posemb, new_size=None, *, old_size=None, num_prefix_tokens=None, mode="bicubic",
                    antialias=False, align_corners=False, scale_factor=None, upcast=False):
    """``posext.resample`` with the peer's compute dtype.

    ``upcast=True`` (timm, HF Dinov2): the grid is interpolated in float32 whatever the input dtype (float64
    included) and cast back, while prefix rows stay untouched in the input dtype. ``upcast=False`` (MAE,
    open_clip, DINO v1, HF ViT / CLIP): float32 / float64 are interpolated in their own dtype; float16 /
    bfloat16 are still computed in float32 by posext (the peers would interpolate natively in half, which
    differs by device and is not implemented on CPU with antialias).

    Modes posext does not implement (``area``, ``nearest-exact``) go through ``F.interpolate`` the same way.
    """
    kwargs = dict(old_size=old_size, num_prefix_tokens=num_prefix_tokens, mode=mode, antialias=antialias,
                  align_corners=align_corners, scale_factor=scale_factor)
    if mode not in MODES:
        return _interpolate_torch(posemb, new_size, upcast=upcast, **kwargs)
    if not upcast or posemb.dtype in _LOW_PRECISION or posemb.dtype == torch.float32:
        return resample(posemb, new_size, **kwargs)
    out = resample(posemb.float(), new_size, **kwargs).to(posemb.dtype)
    prefix = _prefix_count(posemb, num_prefix_tokens)
    if prefix:
        out = torch.cat([posemb[..., :prefix, :], out[..., prefix:, :]], dim=-2)
    return out


def _prefix_count(posemb, num_prefix_tokens):
    if posemb.dim() == 4:
        return 0
    return 1 if num_prefix_tokens is None else num_prefix_tokens


def _interpolate_torch(posemb, new_size, *, old_size, num_prefix_tokens, mode, antialias, align_corners,
                       scale_factor, upcast):
    """Plain split -> permute -> F.interpolate -> permute -> cat, for modes outside ``posext.MODES``."""
    nhwc = posemb.dim() == 4
    unbatched = posemb.dim() == 2
    tokens = posemb.unsqueeze(0) if unbatched else posemb
    if nhwc:
        prefix = 0
        b, h, w, c = tokens.shape
        grid = tokens
    else:
        prefix = _prefix_count(posemb, num_prefix_tokens)
        b, n, c = tokens.shape
        if old_size is None:
            side = int((n - prefix) ** 0.5)
            old_size = (side, side)
        h, w = pair(old_size)
        grid = tokens[:, prefix:].reshape(b, h, w, c)
    grid = grid.permute(0, 3, 1, 2)
    orig_dtype = grid.dtype
    if upcast:
        grid = grid.float()
    kwargs = dict(mode=mode, antialias=antialias)
    if align_corners is not None:
        kwargs["align_corners"] = align_corners
    if scale_factor is not None:
        kwargs["scale_factor"] = scale_factor
    else:
        kwargs["size"] = pair(new_size)
    grid = F.interpolate(grid, **kwargs).to(orig_dtype).permute(0, 2, 3, 1)
    if nhwc:
        return grid
    out = torch.cat([tokens[:, :prefix], grid.reshape(b, -1, c)], dim=1)
    return out[0] if unbatched else out
