"""Pure tensor transforms for the grid-dependent tensors that are not absolute position tables.

Each function resizes one kind of tensor the way the model family's own code does (its checkpoint filter or
its run-time resize), so a resized checkpoint loads into the family's model at a new size and behaves as the
family would. No file I/O and no detection: the caller says which tensor it is and which sizes apply.

Sizes are (H, W) = (rows, columns); a window of (Wh, Ww) tokens has a relative-offset grid of
(2*Wh - 1, 2*Ww - 1). Results are new tensors in the input's dtype and device (half types are computed in
float32 and rounded once, as the families do); extra rows / prefix tokens are copied bit for bit.
"""
import math
from typing import Sequence, Tuple, Union

import torch

from .. import _checks
from ..resample import resample

Size = Union[int, Tuple[int, int]]

__all__ = [
    "relative_position_index", "resize_rel_pos_bias_table", "resize_rel_pos_1d", "attention_bias_idxs",
    "resize_attention_biases", "resample_patch_embed", "resample_video_table", "resample_temporal",
    "resize_blocked_pos_embed",
]

_TABLE_METHODS = ("geometric", "bicubic", "bilinear")


def _float_tensor(name: str, t, dims: Sequence[int], what: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(t).__name__}")
    _checks.float_dtype(f"{name}.dtype", t.dtype)
    if t.dim() not in dims:
        raise ValueError(f"{name} must be {what}, got shape {tuple(t.shape)}")
    return t


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else t.dtype


def _offset_grid(window: Tuple[int, int]) -> Tuple[int, int]:
    return 2 * window[0] - 1, 2 * window[1] - 1


# ---------------------------------------------------------------------------------------------------------
# Swin / BEiT relative position bias tables


def relative_position_index(window: Size, *, class_token: bool = False) -> torch.Tensor:
    """The index into a relative position bias table for every (query, key) pair of a window.

    Token i of the window (row-major, at (y_i, x_i)) and token j get row
    ``(y_i - y_j + Wh - 1) * (2*Ww - 1) + (x_i - x_j + Ww - 1)`` of a ``[(2Wh-1)*(2Ww-1), heads]`` table
    (Swin, BEiT, timm ``gen_relative_position_index``). With ``class_token=True`` (BEiT, Data2Vec) the class
    token is put in front: the result is ``[Wh*Ww + 1, Wh*Ww + 1]``, its row 0 (class query -> any key) reads
    table row ``D = (2Wh-1)*(2Ww-1)``, its column 0 (grid query -> class key) row ``D + 1`` and the
    (class, class) pair row ``D + 2``: the three extra rows BEiT stores after the offset grid.
    """
    wh, ww = _checks.grid_pair("window", window)
    class_token = _checks.flag("class_token", class_token)
    ys, xs = torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    index = (ys[:, None] - ys[None, :] + wh - 1) * (2 * ww - 1) + (xs[:, None] - xs[None, :] + ww - 1)
    if not class_token:
        return index.contiguous()
    d = (2 * wh - 1) * (2 * ww - 1)
    full = torch.empty((wh * ww + 1,) * 2, dtype=torch.long)
    full[1:, 1:] = index
    full[0, :] = d
    full[1:, 0] = d + 1
    full[0, 0] = d + 2
    return full


def _geometric_positions(src: int, dst: int) -> torch.Tensor:
    """Source sample positions of BEiT's resize: offsets spaced by a geometric progression of ratio q, chosen
    by bisection on [1.01, 1.5] so that the half-width sum 1 + q + ... + q^(n-1) (n = src // 2) reaches
    dst // 2; q is the last bisection midpoint, as in the original recipe."""
    left, right, n = 1.01, 1.5, src // 2
    q = left
    while right - left > 1e-6:
        q = (left + right) / 2.0
        if (1.0 - q ** n) / (1.0 - q) > dst // 2:
            right = q
        else:
            left = q
    dis, cur = [], 1.0
    for i in range(n):
        dis.append(cur)
        cur += q ** (i + 1)
    return torch.tensor([-d for d in reversed(dis)] + [0.0] + dis, dtype=torch.float64)


def _linear_weights(points: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[len(targets), len(points)] piecewise-linear interpolation weights on sorted points, clamped to the
    end values outside them (as the rectilinear-grid interpolator BEiT's resize uses)."""
    w = torch.zeros(targets.numel(), points.numel(), dtype=torch.float64)
    right = torch.bucketize(targets, points).clamp(max=points.numel() - 1)
    left = (right - 1).clamp(min=0)
    d_left = (targets - points[left]).clamp(min=0)
    d_right = (points[right] - targets).clamp(min=0)
    total = d_left + d_right
    exact = total == 0  # on a point (or clamped onto the first one): all weight there
    d_right = torch.where(exact, torch.ones_like(d_right), d_right)
    total = torch.where(exact, torch.ones_like(total), total)
    rows = torch.arange(targets.numel())
    w[rows, left] += d_right / total
    w[rows, right] += torch.where(exact, torch.zeros_like(d_left), d_left) / total
    return w


def _resize_offset_grid(grid: torch.Tensor, src: Tuple[int, int], dst: Tuple[int, int], method: str):
    """[heads, Sh, Sw] -> [heads, Dh, Dw] with one of the table methods (float32/float64 in and out)."""
    if method == "geometric":
        axes = []
        for s, d in zip(src, dst):
            targets = torch.arange(-(d // 2), d // 2 + 0.1, 1.0, dtype=torch.float64)
            axes.append(_linear_weights(_geometric_positions(s, d), targets).to(grid.dtype).to(grid.device))
        return axes[0] @ grid @ axes[1].T  # separable bilinear on a rectilinear grid
    table = grid.permute(1, 2, 0).reshape(1, src[0] * src[1], grid.shape[0])
    out = resample(table, dst, old_size=src, num_prefix_tokens=0, mode=method)
    return out.reshape(dst[0], dst[1], grid.shape[0]).permute(2, 0, 1)


def resize_rel_pos_bias_table(table: torch.Tensor, old_window: Size, new_window: Size, *,
                              num_extra_rows: int = 0, layout: str = "rows",
                              method: str = "geometric") -> torch.Tensor:
    """Resize a relative position bias table from an ``old_window`` to a ``new_window`` of tokens.

    Args:
        table: ``layout="rows"``: ``[(2Wh-1)*(2Ww-1) + num_extra_rows, heads]`` (Swin v1, BEiT, Data2Vec,
            GCViT, MaxViT "rw" models; rows row-major over the (dy, dx) offset grid, extra rows after it).
            ``layout="heads_2d"``: ``[heads, 2Wh-1, 2Ww-1]`` (MaxViT / MaxxViT TF-ported tables).
        old_window, new_window: ``(Wh, Ww)`` windows (an int n means (n, n)).
        num_extra_rows: rows after the offset grid (3 for BEiT / Data2Vec class-token pairs), kept as is.
        method: ``"geometric"``: what timm's checkpoint filters (beit, swin_transformer, maxxvit,
            vision_transformer_relpos) and ``set_window_size`` (GCViT and all above) do: BEiT's recipe of
            source offsets spaced geometrically around 0 and linear interpolation at the integer target
            offsets, values past the ends clamped. ``"bilinear"``: HF BEiT / Data2Vec at run time
            (``interpolate_pos_encoding``, F.interpolate bilinear on the offset grid). ``"bicubic"``:
            F.interpolate bicubic (timm ``resize_rel_pos_bias_table_simple``).

    Returns the resized table in the input layout and dtype (a copy when the windows are equal).
    """
    old_w = _checks.grid_pair("old_window", old_window)
    new_w = _checks.grid_pair("new_window", new_window)
    extra = _checks.nonnegative_int("num_extra_rows", num_extra_rows)
    if not isinstance(method, str) or method not in _TABLE_METHODS:
        raise ValueError(f"method must be one of {_TABLE_METHODS}, got {method!r}")
    src, dst = _offset_grid(old_w), _offset_grid(new_w)
    if layout == "rows":
        _float_tensor("table", table, (2,), "[(2Wh-1)*(2Ww-1) + num_extra_rows, heads]")
        if table.shape[0] != src[0] * src[1] + extra:
            raise ValueError(f"table {tuple(table.shape)} must have (2*{old_w[0]}-1)*(2*{old_w[1]}-1) + "
                             f"{extra} = {src[0] * src[1] + extra} rows for old_window {old_w} and "
                             f"num_extra_rows={extra}, got {table.shape[0]}")
        heads = table.shape[1]
        grid = table[:src[0] * src[1]].T.reshape(heads, src[0], src[1])
    elif layout == "heads_2d":
        _float_tensor("table", table, (3,), "[heads, 2Wh-1, 2Ww-1]")
        if extra:
            raise ValueError(f"layout='heads_2d' tables have no extra rows, got num_extra_rows={extra}")
        if tuple(table.shape[1:]) != src:
            raise ValueError(f"table {tuple(table.shape)} must be [heads, {src[0]}, {src[1]}] for "
                             f"old_window {old_w}")
        grid = table
    else:
        raise ValueError(f"layout must be 'rows' or 'heads_2d', got {layout!r}")
    if src == dst:
        return table.clone()
    out = _resize_offset_grid(grid.to(_compute_dtype(table)), src, dst, method).to(table.dtype)
    if layout == "heads_2d":
        return out.contiguous()
    rows = out.reshape(out.shape[0], dst[0] * dst[1]).T
    return torch.cat([rows, table[src[0] * src[1]:]], dim=0)


# ---------------------------------------------------------------------------------------------------------
# SAM / MViTv2 decomposed relative positions


def resize_rel_pos_1d(rel_pos: torch.Tensor, new_length: int) -> torch.Tensor:
    """Resize a 1-D relative position table ``[2S-1, C]`` (SAM / HF SAM ``rel_pos_h`` / ``rel_pos_w``, MViTv2)
    to ``[new_length, C]`` by linear interpolation along the offsets with half-pixel centres
    (F.interpolate ``mode="linear"``, align_corners=False): what SAM's ``get_rel_pos`` does at run time and
    timm's mvitv2 checkpoint filter does on load. For a window of S' tokens, ``new_length = 2*S' - 1``."""
    _float_tensor("rel_pos", rel_pos, (2,), "[2S-1, C]")
    length = _checks.positive_int("new_length", new_length)
    if rel_pos.shape[0] == 0:
        raise ValueError(f"rel_pos must have at least one row, got shape {tuple(rel_pos.shape)}")
    # a (L, 1) grid resized to (L', 1) bilinearly: the width axis is the identity, the height axis is linear
    return resample(rel_pos, (length, 1), old_size=(rel_pos.shape[0], 1), num_prefix_tokens=0,
                    mode="bilinear")


# ---------------------------------------------------------------------------------------------------------
# LeViT-style attention biases (LeViT, EfficientFormer v1/v2, TinyViT, EfficientViT-MSRA)


def attention_bias_idxs(resolution: Size, *, stride: int = 1) -> torch.Tensor:
    """``[Nq, Nk]`` index of query i / key j into LeViT-style ``attention_biases [heads, H*W]``:
    ``|dy| * W + |dx|`` between query (stride * row, stride * column) and key (row, column), row-major.

    Keys cover the (H, W) grid; queries the grid subsampled by ``stride`` (LeViT ``AttentionDownsample``,
    EfficientFormerV2 ``Attention2dDownsample`` with stride 2). EfficientFormer v1 stores this index as a
    persistent buffer (``attention_bias_idxs``), so it must be rebuilt when its resolution changes; the other
    families build it at init and their filters drop it.
    """
    h, w = _checks.grid_pair("resolution", resolution)
    s = _checks.positive_int("stride", stride)
    ky, kx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    qy, qx = torch.meshgrid(torch.arange(0, h, s), torch.arange(0, w, s), indexing="ij")
    dy = (qy.flatten()[:, None] - ky.flatten()[None, :]).abs()
    dx = (qx.flatten()[:, None] - kx.flatten()[None, :]).abs()
    return (dy * w + dx).contiguous()


def resize_attention_biases(biases: torch.Tensor, old_resolution: Size, new_resolution: Size, *,
                            mode: str = "bicubic", antialias: bool = True) -> torch.Tensor:
    """Resize LeViT-style ``attention_biases [heads, H*W]`` (one bias per absolute offset (|dy|, |dx|),
    row-major over an (H, W) grid) to a new resolution: F.interpolate of the ``[heads, H, W]`` grid (default
    bicubic with antialias, as timm's TinyViT and EfficientViT-MSRA filters / ``set_resolution`` via
    ``resize_rel_pos_bias_table_levit``; those accept square grids only, this also non-square ones)."""
    _float_tensor("biases", biases, (2,), "[heads, H*W]")
    old_hw = _checks.grid_pair("old_resolution", old_resolution)
    new_hw = _checks.grid_pair("new_resolution", new_resolution)
    if biases.shape[1] != old_hw[0] * old_hw[1]:
        raise ValueError(f"biases {tuple(biases.shape)} must have H*W = {old_hw[0] * old_hw[1]} columns for "
                         f"old_resolution {old_hw}, got {biases.shape[1]}")
    if old_hw == new_hw:
        return biases.clone()
    out = resample(biases.T, new_hw, old_size=old_hw, num_prefix_tokens=0, mode=mode, antialias=antialias)
    return out.T.contiguous()


# ---------------------------------------------------------------------------------------------------------
# Patch-embedding kernels (FlexiViT)


def resample_patch_embed(weight: torch.Tensor, new_size: Size, *, interpolation: str = "bicubic",
                         antialias: bool = True) -> torch.Tensor:
    """Resize a patch-embedding kernel to a new patch size with FlexiViT's pseudo-inverse resize.

    With R the ``[kh'*kw', kh*kw]`` matrix of resizing a patch from (kh, kw) to (kh', kw') (F.interpolate with
    ``interpolation`` / ``antialias``, align_corners=False), the new kernel is ``w' = pinv(R)^T w`` per
    (out, in) channel, so that ``<resize(x), w'> = <x, w>`` for upsizing and the least-squares best for
    downsizing: timm ``resample_patch_embed`` (used by its vision_transformer, eva, beit, swin filters and
    by open_clip's big_vision loader). R and its pseudo-inverse are computed in float64 (timm: float32):
    R is ill-conditioned when one axis shrinks, and float32 pinv then strays ~2e-6 relative from the exact
    result; the weights are applied in float64 and rounded once to the input dtype.

    Args:
        weight: Conv2d ``[O, I, kh, kw]`` or Conv3d ``[O, I, t, kh, kw]`` (resized spatially, t kept).
        new_size: ``(kh', kw')``.
    """
    _float_tensor("weight", weight, (4, 5), "a Conv2d [O, I, kh, kw] or Conv3d [O, I, t, kh, kw] kernel")
    new_hw = _checks.grid_pair("new_size", new_size)
    old_hw = tuple(weight.shape[-2:])
    if min(old_hw) < 1:
        raise ValueError(f"weight {tuple(weight.shape)} has an empty kernel")
    if old_hw == new_hw:
        return weight.clone()
    dtype = torch.float64
    n_old = old_hw[0] * old_hw[1]
    # row k of the identity is basis patch k; resizing it as a grid with n_old channels gives R^T row-wise:
    # resize_mat[n, k] = (resized basis k) at new pixel n
    eye = torch.eye(n_old, dtype=dtype, device=weight.device)
    resize_mat = resample(eye, new_hw, old_size=old_hw, num_prefix_tokens=0, mode=interpolation,
                          antialias=antialias)
    pinv = torch.linalg.pinv(resize_mat)  # [n_old, n_new]
    flat = weight.reshape(-1, n_old).to(dtype)
    return (flat @ pinv).reshape(*weight.shape[:-2], *new_hw).to(weight.dtype)


# ---------------------------------------------------------------------------------------------------------
# Video tables


def _video_tokens(table, old_thw, num_prefix_tokens):
    _float_tensor("table", table, (2, 3), "[P + T*H*W, C] or [B, P + T*H*W, C]")
    if not (isinstance(old_thw, Sequence) and len(old_thw) == 3):
        raise TypeError(f"old_thw must be a (T, H, W) triple, got {old_thw!r}")
    thw = tuple(_checks.positive_int(f"old_thw[{i}]", v) for i, v in enumerate(old_thw))
    tokens = table.unsqueeze(0) if table.dim() == 2 else table
    grid = thw[0] * thw[1] * thw[2]
    prefix = tokens.shape[1] - grid if num_prefix_tokens is None else \
        _checks.nonnegative_int("num_prefix_tokens", num_prefix_tokens)
    if prefix < 0 or tokens.shape[1] != prefix + grid:
        raise ValueError(f"table {tuple(table.shape)} must have P + T*H*W tokens with old_thw {thw} "
                         f"(T*H*W = {grid}) and num_prefix_tokens={num_prefix_tokens}, got "
                         f"{tokens.shape[1]} tokens")
    return tokens, thw, prefix


def _check_temporal_mode(mode):
    if not isinstance(mode, str) or mode not in ("linear", "nearest"):
        raise ValueError(f"temporal_mode must be 'linear' or 'nearest', got {mode!r}")
    return "bilinear" if mode == "linear" else "nearest"


def resample_video_table(table: torch.Tensor, old_thw: Tuple[int, int, int], new_thw: Tuple[int, int, int],
                         *, num_prefix_tokens=None, mode: str = "bicubic", temporal_mode: str = "linear",
                         antialias: bool = False) -> torch.Tensor:
    """Resample a learned video position table ``[B, P + T*H*W, C]`` (or unbatched ``[P + T*H*W, C]``; tokens
    frame-major, then row-major within a frame) from ``old_thw`` to ``new_thw`` = (T, H, W).

    Separable: each frame's (H, W) grid with ``posext.resample`` (``mode``, ``antialias``; F.interpolate
    semantics, align_corners=False), then the time axis with ``temporal_mode`` ("linear", half-pixel centres,
    or "nearest"). With ``mode="bilinear"`` and linear time this equals F.interpolate ``trilinear``.
    Prefix tokens (ViViT's class token) are kept. HF ViViT's own ``interpolate_pos_encoding`` treats all
    T*H*W tokens as one square spatial grid and fails for T > 1; HF VideoMAE uses a fixed sinusoid table
    that is not in the state dict; so no family resizes such a table and this is the plain separable choice.
    ``num_prefix_tokens=None`` means the tokens minus T*H*W.
    """
    tokens, (t, h, w), prefix = _video_tokens(table, old_thw, num_prefix_tokens)
    if not (isinstance(new_thw, Sequence) and len(new_thw) == 3):
        raise TypeError(f"new_thw must be a (T, H, W) triple, got {new_thw!r}")
    nt, nh, nw = (_checks.positive_int(f"new_thw[{i}]", v) for i, v in enumerate(new_thw))
    tmode = _check_temporal_mode(temporal_mode)
    b, _, c = tokens.shape
    frames = tokens[:, prefix:].reshape(b * t, h * w, c)
    frames = resample(frames, (nh, nw), old_size=(h, w), num_prefix_tokens=0, mode=mode, antialias=antialias)
    # time as a (T, 1) grid whose channels are all of a frame's values; width 1 -> 1 is the identity
    per_t = frames.reshape(b, t, nh * nw * c)
    if t != nt:
        per_t = resample(per_t, (nt, 1), old_size=(t, 1), num_prefix_tokens=0, mode=tmode)
    out = torch.cat([tokens[:, :prefix], per_t.reshape(b, nt * nh * nw, c)], dim=1)
    return out[0] if table.dim() == 2 else out


def resample_temporal(table: torch.Tensor, new_frames: int, *, mode: str = "nearest") -> torch.Tensor:
    """Resample a time embedding ``[B, T, C]`` (TimeSformer ``time_embeddings``; also ``[T, C]``) to
    ``new_frames`` along T. Default ``"nearest"``: what HF ``TimesformerEmbeddings`` does at run time when the
    number of frames differs (F.interpolate nearest: source frame floor(i * T / T')); ``"linear"``
    (half-pixel centres) is offered as the smoother alternative."""
    _float_tensor("table", table, (2, 3), "[B, T, C] or [T, C]")
    frames = _checks.positive_int("new_frames", new_frames)
    if not isinstance(mode, str) or mode not in ("linear", "nearest"):
        raise ValueError(f"mode must be 'linear' or 'nearest', got {mode!r}")
    if table.shape[-2] == 0:
        raise ValueError(f"table must have at least one frame, got shape {tuple(table.shape)}")
    return resample(table, (frames, 1), old_size=(table.shape[-2], 1), num_prefix_tokens=0,
                    mode="bilinear" if mode == "linear" else "nearest")


# ---------------------------------------------------------------------------------------------------------
# NesT blocked position embeddings


def resize_blocked_pos_embed(pos_embed: torch.Tensor, new_num_blocks: int, *, new_block_tokens=None,
                             mode: str = "bicubic") -> torch.Tensor:
    """Resize a NesT level's ``pos_embed [B, T, N, C]`` (T = g*g blocks of N = b*b tokens, square) to
    ``new_num_blocks`` blocks of ``new_block_tokens`` tokens (default: N, the block size is a model constant):
    un-block to the (g*b, g*b) image grid, F.interpolate it (bicubic, align_corners=False) to the square side
    sqrt(T' * N') and block again, as timm's nest checkpoint filter does."""
    _float_tensor("pos_embed", pos_embed, (4,), "[B, T blocks, N tokens, C]")
    b_, t, n, c = pos_embed.shape
    g, s = math.isqrt(t), math.isqrt(n)
    if g * g != t or s * s != n or t == 0:
        raise ValueError(f"pos_embed {tuple(pos_embed.shape)} must have a square number of blocks T and of "
                         "tokens per block N")
    nt = _checks.positive_int("new_num_blocks", new_num_blocks)
    nn_ = n if new_block_tokens is None else _checks.positive_int("new_block_tokens", new_block_tokens)
    ng, ns = math.isqrt(nt), math.isqrt(nn_)
    if ng * ng != nt or ns * ns != nn_:
        raise ValueError(f"new_num_blocks ({nt}) and new_block_tokens ({nn_}) must be perfect squares")
    image = pos_embed.reshape(b_, g, g, s, s, c).transpose(2, 3).reshape(b_, g * s * g * s, c)
    side = ng * ns
    image = resample(image, (side, side), old_size=(g * s, g * s), num_prefix_tokens=0, mode=mode)
    blocks = image.reshape(b_, ng, ns, ng, ns, c).transpose(2, 3)
    return blocks.reshape(b_, nt, nn_, c).contiguous()
