"""ONNX translations of ``posext::resample`` and ``posext::resample_add``: the separable matrices of
``_weights.py`` applied to the stored grid, x first, then y, prefix rows copied."""
from onnxscript import ir
from onnxscript import opset18 as op

from ._weights import FLOAT, INT64, axis_matrix, const, convert, slice_axis

_HALF_TYPES = (ir.DataType.FLOAT16, ir.DataType.BFLOAT16)


def opmath(dtype: ir.DataType) -> ir.DataType:
    """The type the kernels compute in: float32 for half types, else the table's own."""
    return FLOAT if dtype in _HALF_TYPES else dtype


def resampled_grid(tokens, old_h, old_w, new_h, new_w, num_prefix_tokens, mode, antialias, align_corners,
                   scale_h, scale_w):
    """``[B, P + old_h * old_w, C]`` -> the resampled grid rows ``[B, new_h * new_w, C]`` in the table's
    type (rounded once from its opmath type)."""
    dtype = tokens.dtype
    T = opmath(dtype)
    channels = tokens.shape[-1]
    grid = convert(slice_axis(tokens, num_prefix_tokens, num_prefix_tokens + old_h * old_w, 1), dtype, T)
    grid = op.Reshape(grid, const([0, old_h, old_w, channels], INT64))
    wx = axis_matrix(old_w, new_w, mode, antialias, align_corners, scale_w, T)  # [new_w, old_w]
    wy = axis_matrix(old_h, new_h, mode, antialias, align_corners, scale_h, T)  # [new_h, old_h]
    along_x = op.MatMul(wx, grid)  # [B, old_h, new_w, C]
    rows = op.MatMul(wy, op.Reshape(along_x, const([0, old_h, -1], INT64)))  # [B, new_h, new_w * C]
    rows = op.Reshape(rows, const([0, -1, channels], INT64))
    return convert(rows, T, dtype)


def resample(tokens, old_h, old_w, new_h, new_w, num_prefix_tokens, mode, antialias, align_corners, scale_h,
             scale_w):
    """``posext::resample``: prefix rows, then the resampled grid."""
    rows = resampled_grid(tokens, old_h, old_w, new_h, new_w, num_prefix_tokens, mode, antialias,
                          align_corners, scale_h, scale_w)
    if num_prefix_tokens == 0:
        return rows
    return op.Concat(slice_axis(tokens, 0, num_prefix_tokens, 1), rows, axis=1)


def resample_add(x, pos_embed, old_h, old_w, new_h, new_w, num_prefix_tokens, mode, antialias, align_corners,
                 scale_h, scale_w):
    """``posext::resample_add``: x + the resampled table (rounded to the table's type, added in opmath)."""
    table = resample(pos_embed, old_h, old_w, new_h, new_w, num_prefix_tokens, mode, antialias, align_corners,
                     scale_h, scale_w)
    return add_in_opmath(x, table)


def add_in_opmath(x, table):
    """x + table (both of x's type) summed in opmath and rounded once, as the fused-add kernels."""
    T = opmath(x.dtype)
    return convert(op.Add(convert(x, x.dtype, T), convert(table, x.dtype, T)), T, x.dtype)
