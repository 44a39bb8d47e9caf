"""ONNX translations of ``posext::resample_varlen`` and ``posext::resample_varlen_add``.

Every result row r finds its image b (packed: the last offset <= r; padded: r // max_length), its place in
that image's grid (frames repeat the grid; ``merge_size`` m orders each m x m block together) and so its
output index and output size along each axis; ``axis_weights`` gives its y and x weights, whose outer product
over the stored grid is one row of a ``[rows, old_h * old_w]`` matrix applied to the table by one MatMul
(memory: rows x table cells). Padding rows get zero weights.
"""
from onnxscript import opset18 as op

from ._resample import add_in_opmath, opmath
from ._weights import END, INT64, as_int64, axis_weights, const, convert, first_dim, slice_axis


def _gather(values, index):
    return op.Gather(values, index, axis=0)


def _packed(max_length) -> bool:
    """The op's max_length < 0 means packed rows (a padded length may be a graph value)."""
    return isinstance(max_length, int) and max_length < 0


def _cells(grid_sizes, offsets, total_tokens, max_length):
    """Per result row: (image b, row within the image, valid) as INT64 [R] (valid: bool, None packed)."""
    if _packed(max_length):
        r = op.Range(const(0, INT64), as_int64(total_tokens), const(1, INT64))
        starts = slice_axis(offsets, 1, END, 0)
        b = op.ReduceSum(op.Cast(op.GreaterOrEqual(op.Unsqueeze(r, const([-1], INT64)), starts), to=INT64),
                         const([1], INT64), keepdims=0)
        return b, op.Sub(r, _gather(offsets, b)), None
    length = as_int64(max_length)
    r = op.Range(const(0, INT64), op.Mul(first_dim(grid_sizes), length), const(1, INT64))
    b, row = op.Div(r, length), op.Mod(r, length)
    t, h, w = (_gather(_column(grid_sizes, k), b) for k in range(3))
    return b, row, op.Less(row, op.Mul(t, op.Mul(h, w)))


def _column(grid_sizes, k):
    return op.Squeeze(slice_axis(grid_sizes, k, k + 1, 1), const([1], INT64))


def _rows(table, grid_sizes, offsets, old_h, old_w, num_prefix_tokens, mode, antialias, align_corners,
          merge_size, total_tokens, max_length):
    """The result rows [R, C] (R = total_tokens packed, B * max_length padded) in the table's type."""
    b, row, valid = _cells(grid_sizes, offsets, total_tokens, max_length)
    h, w = _gather(_column(grid_sizes, 1), b), _gather(_column(grid_sizes, 2), b)
    cell = op.Mod(row, op.Mul(h, w))
    if merge_size == 1:
        oy, ox = op.Div(cell, w), op.Mod(cell, w)
    else:
        m = const(merge_size, INT64)
        block, inner = op.Div(cell, const(merge_size**2, INT64)), op.Mod(cell, const(merge_size**2, INT64))
        blocks_x = op.Div(w, m)
        oy = op.Add(op.Mul(op.Div(block, blocks_x), m), op.Div(inner, m))
        ox = op.Add(op.Mul(op.Mod(block, blocks_x), m), op.Mod(inner, m))
    dtype = table.dtype
    T = opmath(dtype)
    wy = axis_weights(old_h, oy, h, mode, antialias, align_corners, 0.0, T)  # [R, old_h]
    wx = axis_weights(old_w, ox, w, mode, antialias, align_corners, 0.0, T)  # [R, old_w]
    weights = op.Reshape(op.Mul(op.Unsqueeze(wy, const([-1], INT64)), op.Unsqueeze(wx, const([-2], INT64))),
                         const([0, old_h * old_w], INT64))
    if valid is not None:
        weights = op.Mul(weights, op.Unsqueeze(op.Cast(valid, to=T), const([-1], INT64)))
    grid = slice_axis(table, num_prefix_tokens, num_prefix_tokens + old_h * old_w, 0)
    return convert(op.MatMul(weights, convert(grid, dtype, T)), T, dtype)


def _shaped(rows, channels, max_length):
    if _packed(max_length):
        return rows
    return op.Reshape(rows, op.Concat(const([-1], INT64), op.Reshape(as_int64(max_length), const([1], INT64)),
                                      const([channels], INT64), axis=0))


def resample_varlen(table, grid_sizes, offsets, old_h, old_w, num_prefix_tokens, mode, antialias,
                    align_corners, merge_size, total_tokens, max_length):
    """``posext::resample_varlen``: packed [total_tokens, C] or padded [B, max_length, C]."""
    rows = _rows(table, grid_sizes, offsets, old_h, old_w, num_prefix_tokens, mode, antialias, align_corners,
                 merge_size, total_tokens, max_length)
    return _shaped(rows, table.shape[-1], max_length)


def resample_varlen_add(x, table, grid_sizes, offsets, old_h, old_w, num_prefix_tokens, mode, antialias,
                        align_corners, merge_size, max_length):
    """``posext::resample_varlen_add``: x + the rows (x's padding rows plus zeros)."""
    total = first_dim(x)
    rows = _rows(table, grid_sizes, offsets, old_h, old_w, num_prefix_tokens, mode, antialias, align_corners,
                 merge_size, total, max_length)
    return add_in_opmath(x, _shaped(rows, table.shape[-1], max_length))
