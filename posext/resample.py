"""Resampling of learned position-embedding grids, prefix tokens kept apart, exact to F.interpolate.

Layouts (channels last, as models store them):
  [P + N, C]      CLIP / open_clip ``positional_embedding`` (no batch dim)
  [B, P + N, C]   timm / HF ``pos_embed``: P prefix tokens (class, distillation, registers), then the grid
  [B, H, W, C]    NHWC grids (SAM, NaFlex): no prefix tokens, old grid from the shape
Grid tokens are row-major: token P + y*W + x holds row y, column x. Sizes are (H, W) = (rows, columns).

The result equals ``permute -> F.interpolate(mode, antialias, align_corners, size | scale_factor) ->
permute -> cat`` of torch's CPU kernels, evaluated in float32 for float16/bfloat16 (timm, DINOv2 and HF
upcast the same way); prefix rows are copied bit for bit. One fused kernel on CPU and CUDA, with a
gather-based, deterministic backward.
"""
import math
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from . import _backend, _checks
from ._modes import MODES

Size = Union[int, Tuple[int, int]]


def resample(pos_embed: torch.Tensor, new_size: Optional[Size] = None, *, old_size: Optional[Size] = None,
             num_prefix_tokens: Optional[int] = None, mode: str = "bicubic", antialias: bool = False,
             align_corners: Optional[bool] = False,
             scale_factor: Optional[Union[float, Tuple[float, float]]] = None) -> torch.Tensor:
    """Resample a position-embedding grid to ``new_size`` (or by ``scale_factor``), keeping prefix tokens.

    Args:
        pos_embed: ``[P + N, C]``, ``[B, P + N, C]`` or NHWC ``[B, H, W, C]``, floating point; any strides.
        new_size: ``n`` or ``(H, W)`` of the new grid. Exactly one of ``new_size`` / ``scale_factor``.
        old_size: ``(H, W)`` of the stored grid; default: square.
        num_prefix_tokens: P rows in front of the grid (class, distillation, register tokens). Default: what
            the shape implies: ``P + H*W`` tokens minus the ``old_size`` grid; without ``old_size``, 0 when
            the token count is a perfect square and 1 when it is one more than a square (a class token); 0 for
            NHWC.
        mode: "bicubic", "bilinear" or "nearest".
        antialias: PIL-style antialiasing (bilinear / bicubic), as ``F.interpolate(antialias=True)``.
        align_corners: as in ``F.interpolate`` (not for nearest; None means False).
        scale_factor: float or ``(sy, sx)``: new size ``floor(old * s)`` and kernel scale ``1/s``, exactly as
            ``F.interpolate(scale_factor=...)`` (which DINO's ``+0.1`` offset relies on).

    Returns:
        A new tensor in the input's layout and dtype with ``P + H_new * W_new`` tokens
        (NHWC: ``H_new x W_new``).
    """
    antialias, align_corners = _check_inputs(mode, antialias, align_corners, pos_embed=pos_embed)
    tokens, old_hw, prefix, layout = _as_tokens(pos_embed, old_size, num_prefix_tokens)
    new_hw, scales = _target(new_size, scale_factor, old_hw)
    _checks.result_size(lambda: (f"new_size={new_size!r}" if scale_factor is None
                                 else f"scale_factor={scale_factor!r}"),
                        (tokens.shape[0], prefix + new_hw[0] * new_hw[1], tokens.shape[2]), tokens.dtype,
                        tokens.device)
    out = _resample_tokens(tokens, old_hw, new_hw, prefix, mode, antialias, align_corners, scales)
    if layout == "nhwc":
        return out.reshape(out.shape[0], new_hw[0], new_hw[1], out.shape[-1])
    return out[0] if layout == "unbatched" else out


def add_pos_embed(x: torch.Tensor, pos_embed: torch.Tensor, new_size: Optional[Size] = None, *,
                  old_size: Optional[Size] = None, num_prefix_tokens: Optional[int] = None,
                  mode: str = "bicubic", antialias: bool = False, align_corners: Optional[bool] = False,
                  scale_factor: Optional[Union[float, Tuple[float, float]]] = None) -> torch.Tensor:
    """``x + resample(pos_embed, new_size, ...)`` in one fused op that never stores the resized table.

    Args:
        x: tokens ``[B, P + H_new * W_new, C]``, or NHWC ``[B, H_new, W_new, C]`` when ``pos_embed`` is NHWC.
        pos_embed: as for ``resample``: ``[P + N, C]``, ``[1 or B, P + N, C]`` or NHWC ``[1 or B, H, W, C]``;
            a table with batch 1 is shared by every entry of x.
        new_size: the grid of x; may be left out for NHWC x (taken from its shape).
        old_size, num_prefix_tokens, mode, antialias, align_corners, scale_factor: as for ``resample``.

    Returns ``x + table`` in x's layout and dtype, where ``table`` is exactly what ``resample`` returns
    (rounded to the table's dtype before the add, as an unfused caller would add it). Gradients flow to x
    (unchanged) and to ``pos_embed`` (the transposed resampling of the batch-summed gradient). When x and
    ``pos_embed`` differ in dtype it falls back to ``x + resample(...)`` with PyTorch's type promotion.
    """
    antialias, align_corners = _check_inputs(mode, antialias, align_corners, x=x, pos_embed=pos_embed)
    tokens, old_hw, prefix, layout = _as_tokens(pos_embed, old_size, num_prefix_tokens)
    if layout == "nhwc":
        if x.dim() != 4:
            raise ValueError(f"x must be NHWC [B, H, W, C] like pos_embed {tuple(pos_embed.shape)}, got "
                             f"shape {tuple(x.shape)}")
        if new_size is None and scale_factor is None:
            new_size = tuple(x.shape[1:3])
    elif x.dim() != 3:
        raise ValueError(f"x must be [B, P + H*W, C] tokens, got shape {tuple(x.shape)}")
    new_hw, scales = _target(new_size, scale_factor, old_hw)
    channels = tokens.shape[-1]
    if layout == "nhwc":
        expected = (new_hw[0], new_hw[1], channels)
    else:
        expected = (prefix + new_hw[0] * new_hw[1], channels)
    if tuple(x.shape[1:]) != expected:
        grid = (f"new_size {new_hw}" if scale_factor is None
                else f"scale_factor {scale_factor!r} (grid {new_hw})")
        raise ValueError(f"x must be [B, {', '.join(map(str, expected))}] for {grid} with {prefix} prefix "
                         f"tokens and the C = {channels} of pos_embed {tuple(pos_embed.shape)}, got shape "
                         f"{tuple(x.shape)}")
    if tokens.shape[0] not in (1, x.shape[0]):
        raise ValueError(f"pos_embed batch must be 1 or x's batch {x.shape[0]}, got {tokens.shape[0]} "
                         f"(pos_embed shape {tuple(pos_embed.shape)})")
    if x.device != pos_embed.device:
        raise ValueError(f"x and pos_embed must be on one device, got {x.device} and {pos_embed.device}")
    x3 = x.reshape(x.shape[0], expected[0] if layout != "nhwc" else new_hw[0] * new_hw[1], channels)
    if x.dtype == pos_embed.dtype and _backend.use_extension(x.device):
        out = torch.ops.posext.resample_add(x3, tokens, old_hw[0], old_hw[1], new_hw[0], new_hw[1], prefix,
                                            MODES[mode], antialias, align_corners, scales[0], scales[1])
    else:
        out = x3 + _resample_tokens(tokens, old_hw, new_hw, prefix, mode, antialias, align_corners, scales)
    return out.reshape(x.shape)


def _check_inputs(mode, antialias, align_corners, **tensors):
    """Tensor and float dtype checks of the named tensors and of the mode flags
    -> (antialias, align_corners)."""
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a tensor, got {type(t).__name__}")
        _checks.float_dtype(f"{name}.dtype", t.dtype)
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, got {mode!r}")
    antialias = _checks.flag("antialias", antialias)
    align_corners = False if align_corners is None else _checks.flag("align_corners", align_corners)
    if mode == "nearest" and (antialias or align_corners):
        raise ValueError("mode='nearest' takes neither antialias nor align_corners")
    return antialias, align_corners


def _resample_tokens(tokens, old_hw, new_hw, prefix, mode, antialias, align_corners, scales):
    """[B, P + N, C] -> [B, P + N', C] through the op (or its PyTorch contract without the extension)."""
    if _backend.use_extension(tokens.device):
        return torch.ops.posext.resample(tokens, old_hw[0], old_hw[1], new_hw[0], new_hw[1], prefix,
                                         MODES[mode], antialias, align_corners, scales[0], scales[1])
    return _resample_torch(tokens, old_hw, new_hw, prefix, mode, antialias, align_corners, scales)


def _as_tokens(pos_embed, old_size, num_prefix_tokens):
    """-> ([B, P + N, C] view, (H, W), P, layout)."""
    shape = tuple(pos_embed.shape)
    if pos_embed.dim() == 4:
        if num_prefix_tokens is not None and not (_checks.is_int(num_prefix_tokens)
                                                  and num_prefix_tokens == 0):
            raise ValueError(f"NHWC input {shape} has no prefix tokens; got "
                             f"num_prefix_tokens={num_prefix_tokens!r}")
        b, h, w, c = shape
        _checks.positive_int("pos_embed grid height (dim 1)", h)
        _checks.positive_int("pos_embed grid width (dim 2)", w)
        if old_size is not None and _checks.grid_pair("old_size", old_size) != (h, w):
            raise ValueError(f"old_size {old_size!r} does not match the NHWC grid ({h}, {w}) of pos_embed "
                             f"{shape}")
        return pos_embed.reshape(b, h * w, c), (h, w), 0, "nhwc"
    if pos_embed.dim() not in (2, 3):
        raise ValueError(f"pos_embed must be [P+N, C], [B, P+N, C] or NHWC [B, H, W, C]; got shape {shape}")
    layout = "unbatched" if pos_embed.dim() == 2 else "batched"
    tokens = pos_embed.unsqueeze(0) if layout == "unbatched" else pos_embed
    n_total = tokens.shape[1]
    if num_prefix_tokens is not None:
        _checks.nonnegative_int("num_prefix_tokens", num_prefix_tokens)
        if num_prefix_tokens > n_total:
            raise ValueError(f"num_prefix_tokens={num_prefix_tokens} exceeds the {n_total} tokens of "
                             f"pos_embed {shape}")
    if old_size is not None:
        old_hw = _checks.grid_pair("old_size", old_size)
        prefix = n_total - old_hw[0] * old_hw[1] if num_prefix_tokens is None else num_prefix_tokens
        if prefix < 0 or old_hw[0] * old_hw[1] != n_total - prefix:
            raise ValueError(f"old_size {old_hw} has {old_hw[0] * old_hw[1]} tokens but pos_embed {shape} "
                             f"has {n_total} tokens"
                             + ("" if num_prefix_tokens is None else
                                f", N = {n_total} - {prefix} = {n_total - prefix} grid tokens"))
        return tokens, old_hw, prefix, layout
    if num_prefix_tokens is None:  # a square grid, or a class token and a square grid
        squares = [p for p in (0, 1) if n_total - p > 0 and _square_side(n_total - p) is not None]
        if not squares:
            raise ValueError(f"pos_embed {shape} has {n_total} tokens: neither a square grid nor a class "
                             "token and a square grid; pass old_size=(H, W) and/or num_prefix_tokens")
        prefix = squares[0]
    else:
        prefix = num_prefix_tokens
    side = _square_side(n_total - prefix)
    if side is None:
        raise ValueError(f"pos_embed {shape} has N = {n_total} - {prefix} = {n_total - prefix} grid tokens, "
                         "not a square grid: pass old_size=(H, W) (or the right num_prefix_tokens)")
    return tokens, (side, side), prefix, layout


def _square_side(n):
    side = int(round(math.sqrt(n)))  # not math.isqrt: torch.compile cannot trace it
    return side if n > 0 and side * side == n else None


def _target(new_size, scale_factor, old_hw):
    """-> ((H_new, W_new), (scale_h, scale_w)); scales are 0.0 when the size was given."""
    if (new_size is None) == (scale_factor is None):
        raise ValueError("pass exactly one of new_size and scale_factor")
    if new_size is not None:
        return _checks.grid_pair("new_size", new_size), (0.0, 0.0)
    pair = scale_factor if isinstance(scale_factor, Sequence) else (scale_factor, scale_factor)
    if len(pair) != 2:
        raise ValueError(f"scale_factor must be a float or an (sy, sx) pair, got {scale_factor!r}")
    scales = tuple(_checks.positive_float(f"scale_factor[{i}]", s) for i, s in enumerate(pair))
    if not all(math.isfinite(float(n) * s) for n, s in zip(old_hw, scales)):
        raise ValueError(f"scale_factor {scale_factor!r} maps the grid {old_hw} past any size")
    new_hw = tuple(int(math.floor(float(n) * s)) for n, s in zip(old_hw, scales))
    if min(new_hw) < 1:
        raise ValueError(f"scale_factor {scale_factor!r} maps the grid {old_hw} to {new_hw}: "
                         "sizes must be >= 1")
    return new_hw, scales


def _resample_torch(tokens, old_hw, new_hw, prefix, mode, antialias, align_corners, scales):
    """The op's contract in plain PyTorch: split, permute, F.interpolate (float32 for half/bf16), cat."""
    b, _, c = tokens.shape
    grid = tokens[:, prefix:].reshape(b, old_hw[0], old_hw[1], c).permute(0, 3, 1, 2)
    if b == 0 or c == 0:
        resized = grid.new_empty((b, c) + tuple(new_hw))
    else:
        kwargs = dict(mode=mode, antialias=antialias)
        if mode != "nearest":
            kwargs["align_corners"] = align_corners
        if scales[0] > 0:
            kwargs["scale_factor"] = scales
        else:
            kwargs["size"] = new_hw
        upcast = grid.dtype in (torch.float16, torch.bfloat16)
        resized = _Interpolate.apply(grid.float() if upcast else grid, tuple(old_hw), tuple(new_hw), kwargs)
        resized = resized.to(grid.dtype)
    resized = resized.permute(0, 2, 3, 1).reshape(b, new_hw[0] * new_hw[1], c)
    return torch.cat([tokens[:, :prefix], resized], dim=1)


def _interpolate(grid, old_hw, new_hw, kwargs):
    """F.interpolate of [B, C, H, W], with a way around torch (2.14 CPU) antialias repeating output row 0 when
    the output width is 1 and the height changes: the same resampling with the axes swapped is unaffected."""
    if kwargs["antialias"] and new_hw[1] == 1 and new_hw[0] != old_hw[0]:
        scales = kwargs.get("scale_factor")
        swap = {"scale_factor": scales[::-1]} if scales is not None else {"size": new_hw[::-1]}
        return F.interpolate(grid.transpose(2, 3), **{**kwargs, **swap}).transpose(2, 3)
    return F.interpolate(grid, **kwargs)


def _axis_weights(old_hw, new_hw, kwargs, dtype, device):
    """The [out, in] matrices W_y, W_x of one resampling (out = W_y X W_x^T per channel), read off the forward
    itself: channel k of a one-hot input along one axis (ones along the other, whose weights sum to 1
    per row)."""
    h, w = old_hw
    one_hot_y = torch.eye(h, dtype=dtype, device=device)[None, :, :, None].expand(1, h, h, w)
    one_hot_x = torch.eye(w, dtype=dtype, device=device)[None, :, None, :].expand(1, w, h, w)
    wy = _interpolate(one_hot_y.contiguous(), old_hw, new_hw, kwargs)[0, :, :, 0].t()  # [nh, h]
    wx = _interpolate(one_hot_x.contiguous(), old_hw, new_hw, kwargs)[0, :, 0, :].t()  # [nw, w]
    return wy, wx


class _Interpolate(torch.autograd.Function):
    """F.interpolate forward; backward W_y^T G W_x from that forward's own weights. torch's backward is not
    the transpose of its forward for some scale_factor calls (an axis whose size does not change)."""

    @staticmethod
    def forward(ctx, grid, old_hw, new_hw, kwargs):
        ctx.resample = (old_hw, new_hw, kwargs)
        return _interpolate(grid, old_hw, new_hw, kwargs)

    @staticmethod
    def backward(ctx, grad):
        old_hw, new_hw, kwargs = ctx.resample
        wy, wx = _axis_weights(old_hw, new_hw, kwargs, grad.dtype, grad.device)
        return torch.einsum("bcop,oi,pj->bcij", grad, wy, wx), None, None, None


__all__ = ["resample", "add_pos_embed", "MODES"]
