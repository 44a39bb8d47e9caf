"""Variable-resolution batches: one learned grid resampled to a different (h, w) for every image, in one call.

Native-resolution models (SigLIP2 NaFlex, timm NaFlexViT, Qwen-VL, MoonViT, GLM-4V) resize one stored table
to each image's grid on every forward. ``resample_varlen`` returns all of those rows at once:

* packed ``[sum_i t_i * h_i * w_i, C]``: image after image (the order of ``cu_seqlens``), row-major within
  each image, its t frames repeating its grid; or
* padded ``[B, max_length, C]``: image i's rows first, zeros after them.

``merge_size=m`` puts each m x m block of an image's grid together, as Qwen-VL orders its tokens: the order
within an image is (t, h/m, w/m, m, m). Each image's rows equal ``F.interpolate(grid, size=(h_i, w_i), mode,
antialias, align_corners)`` of the stored grid (as :func:`posext.resample`), prefix rows left out.
"""
from typing import Optional, Sequence, Union

import torch

from . import _backend, _checks
from .resample import MODES, _as_tokens, _check_inputs, _resample_tokens

GridSizes = Union[torch.Tensor, Sequence[Sequence[int]]]


def _grid_sizes(grid_sizes: GridSizes) -> torch.Tensor:
    """``[B, 2]`` (h, w) or ``[B, 3]`` (t, h, w) ints -> an int64 ``[B, 3]`` tensor on the CPU, values
    checked."""
    if not isinstance(grid_sizes, torch.Tensor):
        grid_sizes = _list_grid_sizes(grid_sizes)
    sizes = _grid_sizes_on_device(grid_sizes).cpu()
    if sizes.numel() and int(sizes.min()) < 1:
        bad = int((sizes < 1).any(dim=1).nonzero()[0])
        raise ValueError(f"grid_sizes must be >= 1, got {tuple(sizes[bad].tolist())} (t, h, w) for image "
                         f"{bad}")
    return sizes


def _list_grid_sizes(grid_sizes) -> torch.Tensor:
    """Nested lists of ints -> an int64 tensor (its shape checked by ``_grid_sizes_on_device``)."""
    try:  # the common case, checked in one pass: rows of Python ints (not bools)
        if all(type(v) is int for row in grid_sizes for v in row):
            sizes = torch.tensor(grid_sizes, dtype=torch.int64)
            if sizes.dim() == 2:
                return sizes
    except (TypeError, ValueError, RuntimeError, OverflowError):
        pass  # the checks below say what is wrong
    try:
        items = list(grid_sizes)
    except TypeError:
        raise TypeError(f"grid_sizes must be a [B, 2] or [B, 3] int tensor or list, got "
                        f"{type(grid_sizes).__name__}") from None
    if items and all(_checks.is_int(v) for v in items):  # one flat row: shape (n,), as for a tensor
        raise ValueError(f"grid_sizes must be [B, 2] (h, w) or [B, 3] (t, h, w), got shape "
                         f"({len(items)},)")
    try:
        rows = [list(r) for r in items]
    except TypeError:
        raise TypeError(f"grid_sizes must be a [B, 2] or [B, 3] int tensor or list of rows, got "
                        f"{grid_sizes!r}") from None
    if any(not _checks.is_int(v) for r in rows for v in r):
        raise TypeError(f"grid_sizes must hold ints, got {rows!r}")
    width = {len(r) for r in rows}
    if len(width) > 1:
        raise ValueError(f"grid_sizes rows must all be (h, w) or all (t, h, w), got lengths "
                         f"{sorted(width)}")
    if any(abs(v) >= 2**63 for r in rows for v in r):
        raise ValueError(f"grid_sizes values must fit int64, got {rows!r}")
    return torch.tensor(rows, dtype=torch.int64).reshape(len(rows), width.pop() if rows else 2)


def _check_merge(sizes: torch.Tensor, merge_size: int) -> None:
    if merge_size == 1 or not sizes.numel():
        return
    bad = ((sizes[:, 1] % merge_size) | (sizes[:, 2] % merge_size)).nonzero()
    if bad.numel():
        i = int(bad[0])
        raise ValueError(f"merge_size={merge_size} must divide every image's h and w, got (h, w) = "
                         f"{tuple(sizes[i, 1:].tolist())} for image {i}")


def _merge_order(rows: torch.Tensor, h: int, w: int, m: int) -> torch.Tensor:
    """Row-major ``[h*w, C]`` -> Qwen-VL order (h/m, w/m, m, m)."""
    if m == 1:
        return rows
    c = rows.shape[-1]
    return rows.reshape(h // m, m, w // m, m, c).permute(0, 2, 1, 3, 4).reshape(h * w, c)


def resample_varlen(pos_embed: torch.Tensor, grid_sizes: GridSizes, *, old_size=None,
                    num_prefix_tokens: int = 0, mode: str = "bicubic", antialias: bool = False,
                    align_corners: Optional[bool] = False, max_length: Optional[int] = None,
                    merge_size: int = 1) -> torch.Tensor:
    """The stored grid resampled to every image's grid of ``grid_sizes``, packed or padded.

    Args:
        pos_embed: the stored table, in any layout :func:`posext.resample` takes (``[P + N, C]``,
            ``[1, P + N, C]``, NHWC ``[1, H, W, C]``); its P prefix rows are not part of the result.
        grid_sizes: ``[B, 2]`` (h, w) or ``[B, 3]`` (t, h, w) ints (tensor or nested list); an image's t
            frames repeat its grid.
        old_size, num_prefix_tokens: the stored grid and its prefix rows, as for ``resample`` (here
            ``num_prefix_tokens`` defaults to 0; ``old_size`` to a square grid, or the NHWC shape).
        mode, antialias, align_corners: as ``F.interpolate``.
        max_length: None for the packed ``[sum t*h*w, C]`` result; else the padded ``[B, max_length, C]`` one
            (an image with more tokens is refused).
        merge_size: m: every m x m block of an image's grid kept together (Qwen-VL order); m must divide
            each h and w.

    Returns:
        ``[sum_i t_i h_i w_i, C]`` or ``[B, max_length, C]`` in the table's dtype and device. Differentiable
        with respect to ``pos_embed``.

    With the compiled extension all images are resampled by one op (one kernel launch on CUDA). The packed
    result's length is read on the host (one device sync when ``grid_sizes`` is a GPU tensor). The padded
    result with a ``grid_sizes`` tensor on the GPU (or under ``torch.compile``) reads no value on the host:
    the checks of the sizes themselves (>= 1, divisible by ``merge_size``, at most ``max_length`` tokens) are
    then left to the op, whose kernel refuses a bad image with a device-side assert.

    Compiling: the padded form with a ``grid_sizes`` tensor traces into one op, ``fullgraph=True`` included.
    The packed form's row count depends on the values of ``grid_sizes``: pass them as a Python list (the
    graph is then specialised to those sizes), or compute the packed rows from the padded ones outside the
    compiled region.
    """
    return _resample_plan(_plan(pos_embed, grid_sizes, old_size, num_prefix_tokens, mode, antialias,
                                align_corners, max_length, merge_size), mode)


def _resample_plan(plan, mode) -> torch.Tensor:
    tokens, old_hw, prefix, sizes, lengths, antialias, align_corners, max_length, merge_size = plan
    if _backend.use_extension(tokens.device):
        return _resample_varlen_op(None, plan, mode)
    return _resample_varlen_torch(tokens, old_hw, prefix, sizes, lengths, mode, antialias, align_corners,
                                  max_length, merge_size)


def _plan(pos_embed, grid_sizes, old_size, num_prefix_tokens, mode, antialias, align_corners, max_length,
          merge_size, limit_name=None):
    """Checked arguments -> (tokens [1, P + N, C], old (h, w), P, sizes int64 [B, 3], lengths, antialias,
    align_corners, max_length, merge_size). ``lengths`` is None (and ``sizes`` on the table's device, unread)
    when the op will take the padded sizes without a host read; else sizes are on the CPU, checked.
    ``limit_name`` names what sets the padded length in messages (default ``max_length=L``)."""
    antialias, align_corners = _check_inputs(mode, antialias, align_corners, pos_embed=pos_embed)
    num_prefix_tokens = _checks.nonnegative_int("num_prefix_tokens", num_prefix_tokens)
    merge_size = _checks.positive_int("merge_size", merge_size)
    tokens, old_hw, prefix, layout = _as_tokens(pos_embed, old_size, num_prefix_tokens)
    if tokens.shape[0] != 1:
        raise ValueError(f"pos_embed must hold one table (batch 1), got shape {tuple(pos_embed.shape)}")
    if max_length is not None:
        max_length = _checks.nonnegative_int("max_length", max_length)
    flags = (antialias, align_corners, max_length, merge_size)
    if (max_length is not None and _backend.use_extension(tokens.device)
            and _values_stay_on_device(grid_sizes)):
        return (tokens, old_hw, prefix, _grid_sizes_on_device(grid_sizes).to(tokens.device), None) + flags
    sizes = _grid_sizes(grid_sizes)
    _check_merge(sizes, merge_size)
    lengths = [t * h * w for t, h, w in sizes.tolist()]  # Python ints: no int64 wrap-around
    if max_length is not None:
        long = [i for i, n in enumerate(lengths) if n > max_length]
        if long:
            limit = limit_name or f"max_length={max_length}"
            raise ValueError(f"{limit} is shorter than image {long[0]}: (t, h, w) = "
                             f"{tuple(sizes[long[0]].tolist())} has {lengths[long[0]]} tokens")
    shape = (len(lengths), max_length, tokens.shape[-1]) if max_length is not None else \
        (sum(lengths), tokens.shape[-1])
    _checks.result_size(lambda: f"grid_sizes ({len(lengths)} images, {sum(lengths)} tokens)", shape,
                        tokens.dtype, tokens.device)
    return (tokens, old_hw, prefix, sizes, lengths) + flags


def _values_stay_on_device(grid_sizes) -> bool:
    """True when reading grid_sizes' values on the host would wait for a device (or break a compiled
    graph)."""
    if not isinstance(grid_sizes, torch.Tensor):
        return False
    return grid_sizes.device.type not in ("cpu", "meta") or torch.compiler.is_compiling()


def _grid_sizes_on_device(grid_sizes: torch.Tensor) -> torch.Tensor:
    """The checks of ``_grid_sizes`` that need no values: ``[B, 2]`` / ``[B, 3]`` ints -> int64 ``[B, 3]``."""
    if grid_sizes.is_floating_point() or grid_sizes.is_complex() or grid_sizes.dtype == torch.bool:
        raise TypeError(f"grid_sizes must hold ints, got dtype {grid_sizes.dtype}")
    if grid_sizes.dim() != 2 or grid_sizes.shape[1] not in (2, 3):
        raise ValueError(f"grid_sizes must be [B, 2] (h, w) or [B, 3] (t, h, w), got shape "
                         f"{tuple(grid_sizes.shape)}")
    sizes = grid_sizes.detach().to(torch.int64)
    if sizes.shape[1] == 2:
        sizes = torch.cat([torch.ones_like(sizes[:, :1]), sizes], dim=1)
    return sizes.contiguous()


def _offsets(sizes: torch.Tensor) -> torch.Tensor:
    """``[B + 1]`` int64: each image's first packed row (running sum of t*h*w), on the sizes' device."""
    lengths = sizes[:, 0] * sizes[:, 1] * sizes[:, 2]
    return torch.cat([lengths.new_zeros(1), torch.cumsum(lengths, 0)])


def _resample_varlen_op(x, plan, mode):
    """The compiled op on the table ``[P + N, C]``: ``resample_varlen`` (x None) or ``resample_varlen_add``.
    Packed: the row count is the sum of the host ``lengths``."""
    tokens, old_hw, prefix, sizes, lengths, antialias, align_corners, max_length, merge_size = plan
    # Offsets where the sizes are (the host, when their values were read there: no kernel launch for them);
    # padded rows read none.
    offsets = _offsets(sizes) if max_length is None else sizes[:0, 0]
    sizes, offsets = sizes.to(tokens.device), offsets.to(tokens.device)
    args = (sizes, offsets, old_hw[0], old_hw[1], prefix, MODES[mode], antialias, align_corners, merge_size)
    length = -1 if max_length is None else max_length
    if x is not None:
        return torch.ops.posext.resample_varlen_add(x, tokens[0], *args, length)
    total = sum(lengths) if lengths is not None else 0
    return torch.ops.posext.resample_varlen(tokens[0], *args, total, length)


def _resample_varlen_torch(tokens, old_hw, prefix, sizes, lengths, mode, antialias, align_corners, max_length,
                           merge_size) -> torch.Tensor:
    """Image by image: ``resample`` to each (h, w) (once per distinct size), reordered, repeated, placed."""
    channels = tokens.shape[-1]
    grids = {}
    pieces = []
    for (t, h, w), n in zip(sizes.tolist(), lengths):
        if (h, w) not in grids:
            rows = _resample_tokens(tokens, old_hw, (h, w), prefix, mode, antialias, align_corners,
                                    (0.0, 0.0))
            grids[(h, w)] = _merge_order(rows[0, prefix:], h, w, merge_size)
        piece = grids[(h, w)].repeat(t, 1) if t > 1 else grids[(h, w)]
        if max_length is not None and n < max_length:
            piece = torch.cat([piece, piece.new_zeros(max_length - n, channels)])
        pieces.append(piece)
    if not pieces:  # an empty view of the table: still part of its graph
        empty = tokens[0, :0]
        return empty.reshape((0, max_length, channels) if max_length is not None else (0, channels))
    return torch.stack(pieces) if max_length is not None else torch.cat(pieces)


def add_pos_embed_varlen(x: torch.Tensor, pos_embed: torch.Tensor, grid_sizes: GridSizes, *, old_size=None,
                         num_prefix_tokens: int = 0, mode: str = "bicubic", antialias: bool = False,
                         align_corners: Optional[bool] = False, merge_size: int = 1) -> torch.Tensor:
    """``x + resample_varlen(pos_embed, grid_sizes, ...)`` for packed ``x`` ``[T, C]`` (T = sum t*h*w) or
    padded ``x`` ``[B, L, C]`` (``max_length`` = L; the padding rows of x are returned unchanged)."""
    _check_inputs(mode, antialias, align_corners, x=x, pos_embed=pos_embed)
    if x.dim() not in (2, 3):
        raise ValueError(f"x must be packed [T, C] or padded [B, L, C], got shape {tuple(x.shape)}")
    if x.device != pos_embed.device:
        raise ValueError(f"x and pos_embed must be on one device, got {x.device} and {pos_embed.device}")
    max_length = x.shape[1] if x.dim() == 3 else None
    limit = None if max_length is None else f"x of shape {tuple(x.shape)} (L = {max_length} rows per image)"
    plan = _plan(pos_embed, grid_sizes, old_size, num_prefix_tokens, mode, antialias, align_corners,
                 max_length, merge_size, limit)
    if x.dtype == pos_embed.dtype and _backend.use_extension(x.device):
        tokens, lengths = plan[0], plan[4]
        rows = (len(plan[3]), max_length) if max_length is not None else (sum(lengths),)
        expected = rows + (tokens.shape[-1],)
        if tuple(x.shape) != expected:
            raise ValueError(f"x must be {'[' + ', '.join(map(str, expected)) + ']'} for these grid_sizes "
                             f"and pos_embed {tuple(pos_embed.shape)}, got shape {tuple(x.shape)}")
        return _resample_varlen_op(x, plan, mode)
    table = _resample_plan(plan, mode)
    if table.shape != x.shape:
        raise ValueError(f"x must be {'[' + ', '.join(map(str, table.shape)) + ']'} for these grid_sizes and "
                         f"pos_embed {tuple(pos_embed.shape)}, got shape {tuple(x.shape)}")
    return x + table


__all__ = ["resample_varlen", "add_pos_embed_varlen"]
