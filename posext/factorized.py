"""Factorized absolute position embeddings (NaViT, Pix2struct), added to the tokens in one fused gather-add.

Conventions (docs/conventions.md): a grid token at row y, column x (row-major: grid token i of an (H, W) grid
has y = i // W, x = i % W) gets
  combine="sum"    (NaViT default):  x + table_y[y] + table_x[x]       tables [Ly, C], [Lx, C]
  combine="concat":                  x + cat(table_y[y], table_x[x])   tables [Ly, Cy], [Lx, Cx], Cy + Cx = C
  table_x=None, table_y [Ly, Lx, C] (Pix2struct): x + table_y[y, x]
Fractional ``coords`` (x, y) in [0, 1] address p = coord * (L - 1) table rows along each axis, read by linear
interpolation between rows floor(p) and floor(p) + 1 (bilinear for the 2-D table). Prefix tokens (class,
registers) are returned unchanged. float16 / bfloat16 are computed in float32. The table gradient is gathered
per table row in a fixed order: deterministic on CPU and CUDA, no atomics.
"""
from typing import Optional, Sequence, Tuple, Union

import torch

from . import _backend, _checks

COMBINE = {"sum": 0, "concat": 1}
_TABLE_2D = 2
Size = Union[int, Tuple[int, int]]


def factorized_pos_embed(x: torch.Tensor, table_y: torch.Tensor, table_x: Optional[torch.Tensor] = None, *,
                         grid_size: Optional[Size] = None, grid_sizes: Optional[Sequence[Size]] = None,
                         coords: Optional[torch.Tensor] = None, num_prefix_tokens: Optional[int] = None,
                         combine: str = "sum") -> torch.Tensor:
    """``x`` plus its factorized position embedding (see the module docstring for the conventions).

    Args:
        x: ``[B, P + H*W, C]`` / ``[P + H*W, C]`` for ``grid_size`` or ``coords`` (N = number of coords), or a
            packed NaViT sequence ``[T, C]`` / ``[1, T, C]`` for ``grid_sizes``, T = sum(P + H_i * W_i).
        table_y, table_x: the row and column tables, or one 2-D table ``[Ly, Lx, C]`` with ``table_x=None``.
        grid_size: ``(H, W)`` or ``n``; needs H <= Ly, W <= Lx.
        grid_sizes: ``[(H_1, W_1), ...]``: images packed one after the other, each with P prefix tokens.
        coords: ``[N, 2]`` fractional (x, y) in [0, 1] (checked, except inside a traced graph).
        num_prefix_tokens: P tokens in front of each image's grid, returned unchanged. Default: what the
            shapes imply (x's tokens minus the grid tokens, shared out over the images of ``grid_sizes``).
        combine: "sum" or "concat" (ignored for a 2-D table).

    Returns:
        A new tensor shaped and typed like ``x``.
    """
    for name, t in (("x", x), ("table_y", table_y)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a tensor, got {type(t).__name__}")
    _checks.float_dtype("x.dtype", x.dtype)
    for name, t in (("table_y", table_y), ("table_x", table_x)):
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a tensor or None, got {type(t).__name__}")
        if t.dtype != x.dtype:
            raise TypeError(f"{name}.dtype must be x's dtype {x.dtype}, got {t.dtype}")
        if t.device != x.device:
            raise ValueError(f"{name} must be on x's device {x.device}, got {t.device}")
    if not isinstance(combine, str) or combine not in COMBINE:
        raise ValueError(f"combine must be one of {sorted(COMBINE)}, got {combine!r}")
    if num_prefix_tokens is not None:
        _checks.nonnegative_int("num_prefix_tokens", num_prefix_tokens)
    if x.dim() not in (2, 3):
        raise ValueError(f"x must be [B, S, C] or [S, C], got shape {tuple(x.shape)}")
    channels = x.shape[-1]
    code = _table_code(table_y, table_x, combine, channels)
    len_y, len_x = ((table_y.shape[0], table_y.shape[1]) if code == _TABLE_2D
                    else (table_y.shape[0], table_x.shape[0]))
    if sum(a is not None for a in (grid_size, grid_sizes, coords)) != 1:
        raise ValueError("pass exactly one of grid_size, grid_sizes and coords")
    x3 = x.unsqueeze(0) if x.dim() == 2 else x
    if grid_sizes is not None and x3.shape[0] != 1:
        raise ValueError(f"a packed sequence (grid_sizes) must be [T, C] or [1, T, C], got shape "
                         f"{tuple(x.shape)}")
    opmath = torch.float64 if x.dtype == torch.float64 else torch.float32
    if grid_sizes is not None:
        grids = _grid_list(grid_sizes, len_y, len_x)
        prefix = _prefix(num_prefix_tokens, x3.shape[1], [h * w for h, w in grids], "grid_sizes", x.shape)
        positions = torch.cat([_grid_positions(g, prefix, opmath, x.device) for g in grids])
    elif grid_size is not None:
        grid = _checks.grid_pair("grid_size", grid_size)
        _check_fits(grid, len_y, len_x, "grid_size")
        prefix = _prefix(num_prefix_tokens, x3.shape[1], [grid[0] * grid[1]], "grid_size", x.shape)
        positions = _grid_positions(grid, prefix, opmath, x.device)
    else:
        _check_coords_tensor(coords, x.device)
        prefix = _prefix(num_prefix_tokens, x3.shape[1], [coords.shape[0]], "coords", x.shape)
        positions = _coord_positions(_checked_coords(coords), prefix, len_y, len_x, opmath)
    if _backend.use_extension(x.device):
        out = torch.ops.posext.factorized_add(x3, positions, table_y, None if code == _TABLE_2D else table_x,
                                              code)
    else:
        out = _factorized_torch(x3, positions, table_y, table_x, code)
    return out.reshape(x.shape)


def _prefix(num_prefix_tokens, tokens, grid_tokens, what, x_shape):
    """P per image: the given one, checked against x's token count, or the one that count implies."""
    images, grid_total = len(grid_tokens), sum(grid_tokens)
    if num_prefix_tokens is None:
        extra = tokens - grid_total
        if extra < 0 or extra % images:
            raise ValueError(f"x {tuple(x_shape)} has {tokens} tokens, which is not {images} image(s) x P "
                             f"prefix tokens + the {grid_total} grid tokens of {what}")
        return extra // images
    if num_prefix_tokens * images + grid_total != tokens:
        raise ValueError(f"x {tuple(x_shape)} has {tokens} tokens but {what} and num_prefix_tokens="
                         f"{num_prefix_tokens} describe {num_prefix_tokens * images + grid_total}")
    return num_prefix_tokens


def _table_code(table_y, table_x, combine, channels):
    if table_x is None:
        if table_y.dim() != 3 or table_y.shape[-1] != channels:
            raise ValueError(f"with table_x=None, table_y must be a 2-D table [Ly, Lx, C={channels}], got "
                             f"{tuple(table_y.shape)}")
        return _TABLE_2D
    for name, t in (("table_y", table_y), ("table_x", table_x)):
        if t.dim() != 2 or t.shape[0] == 0:
            raise ValueError(f"with a table_x, {name} must be [L, C] with L > 0 rows (a 2-D table "
                             f"[Ly, Lx, C] takes table_x=None), got table_y {tuple(table_y.shape)}, "
                             f"table_x {tuple(table_x.shape)}")
    cy, cx = table_y.shape[1], table_x.shape[1]
    if combine == "sum" and not (cy == cx == channels):
        raise ValueError(f"combine='sum' needs table_y and table_x of width C={channels}, got widths {cy} "
                         f"and {cx}")
    if combine == "concat" and cy + cx != channels:
        raise ValueError(f"combine='concat' needs table_y and table_x widths adding up to C={channels}, got "
                         f"{cy} + {cx}")
    return COMBINE[combine]


def _check_fits(grid, len_y, len_x, name):
    if grid[0] > len_y or grid[1] > len_x:
        raise ValueError(f"{name} {tuple(grid)} does not fit the tables ({len_y} rows along y, "
                         f"{len_x} along x)")


def _grid_list(grid_sizes, len_y, len_x):
    if isinstance(grid_sizes, (int, str, torch.SymInt, torch.Tensor)) \
            or not isinstance(grid_sizes, Sequence) or len(grid_sizes) == 0:
        raise ValueError(f"grid_sizes must be a non-empty list of (H, W), got {grid_sizes!r}")
    grids = [_checks.grid_pair(f"grid_sizes[{n}]", g) for n, g in enumerate(grid_sizes)]
    for n, g in enumerate(grids):
        _check_fits(g, len_y, len_x, f"grid_sizes[{n}]")
    return grids


def _grid_positions(grid, prefix, dtype, device):
    """[P + H*W, 2] (x, y) table rows of a row-major grid, prefix rows marked -1."""
    h, w = grid
    # meshgrid, not i % w and i // w: the exporters take a traced w in arange but not in remainder
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    pos = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1).to(dtype)
    return torch.cat([pos.new_full((prefix, 2), -1.0), pos])


def _check_coords_tensor(coords, device):
    if not isinstance(coords, torch.Tensor) or coords.dim() != 2 or coords.shape[1] != 2:
        raise ValueError(f"coords must be a [N, 2] tensor of (x, y), got "
                         f"{getattr(coords, 'shape', coords)!r}")
    if not coords.is_floating_point():
        raise TypeError(f"coords must be floating point, got {coords.dtype}")
    if coords.device != device:
        raise ValueError(f"coords must be on x's device {device}, got {coords.device}")


def _checked_coords(coords):
    """coords in float64, every value in [0, 1] (meta tensors carry no values to check, nor does a traced
    graph: there they are the caller's to keep in range)."""
    coords = coords.to(dtype=torch.float64)
    if (coords.numel() and coords.device.type != "meta" and not torch.compiler.is_compiling()
            and not bool(((coords >= 0) & (coords <= 1)).all())):
        raise ValueError(f"coords must lie in [0, 1] (no NaN), got values in [{coords.min().item()}, "
                         f"{coords.max().item()}]")
    return coords


def _coord_positions(coords, prefix, len_y, len_x, dtype):
    scale = torch.tensor([len_x - 1, len_y - 1], dtype=torch.float64, device=coords.device)
    pos = (coords * scale).to(dtype)
    return torch.cat([pos.new_full((prefix, 2), -1.0), pos])


def _lerp_taps(p, length):
    """The formula of csrc/factorized.h: rows i0 = clamp(floor(p)), i1 = min(i0 + 1, L - 1),
    weights 1 - f, f."""
    i0 = p.floor().clamp(0, length - 1)
    f = p - i0
    i0 = i0.long()
    return i0, (i0 + 1).clamp(max=length - 1), 1 - f, f


def _lerp(row0, row1, w0, w1):
    """factorized.h's lerp_at for every token at once: an integer position (w1 == 0) reads its one row as
    it is."""
    w0, w1 = w0[:, None], w1[:, None]
    return torch.where(w1 == 0, row0, w0 * row0 + w1 * row1)


def _factorized_torch(x3, positions, table_y, table_x, code):
    """The op's contract in plain PyTorch (opmath float32/float64, same summation order as the kernels)."""
    opmath = positions.dtype
    valid = positions[:, 0] >= 0
    px, py = positions[:, 0].clamp(min=0), positions[:, 1].clamp(min=0)
    ty = table_y.to(opmath)
    if code == _TABLE_2D:
        len_y, len_x = ty.shape[0], ty.shape[1]
        y0, y1, wy0, wy1 = _lerp_taps(py, len_y)
        x0, x1, wx0, wx1 = _lerp_taps(px, len_x)
        term = _lerp(_lerp(ty[y0, x0], ty[y0, x1], wx0, wx1), _lerp(ty[y1, x0], ty[y1, x1], wx0, wx1),
                     wy0, wy1)
    else:
        tx = table_x.to(opmath)
        y0, y1, wy0, wy1 = _lerp_taps(py, ty.shape[0])
        x0, x1, wx0, wx1 = _lerp_taps(px, tx.shape[0])
        ypart, xpart = _lerp(ty[y0], ty[y1], wy0, wy1), _lerp(tx[x0], tx[x1], wx0, wx1)
        term = ypart + xpart if code == COMBINE["sum"] else torch.cat([ypart, xpart], dim=1)
    out = x3.to(opmath) + term
    return torch.where(valid[None, :, None], out.to(x3.dtype), x3)


__all__ = ["factorized_pos_embed"]
