"""ONNX translations of ``posext::resample`` and ``posext::resample_add``: the separable matrices of
``_weights.py`` applied to the stored grid, x first, then y, prefix rows copied."""
from onnxscript import ir
from onnxscript import opset18 as op

from ._weights import FLOAT, INT64, axis_matrix, const

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
    first = num_prefix_tokens
    grid = op.Slice(tokens, const([first], INT64), const([first + old_h * old_w], INT64), const([1], INT64))
    if T != dtype:
        grid = op.Cast(grid, to=T)
    grid = op.Reshape(grid, const([0, old_h, old_w, channels], INT64))
    wx = axis_matrix(old_w, new_w, mode, antialias, align_corners, scale_w, T)  # [new_w, old_w]
    wy = axis_matrix(old_h, new_h, mode, antialias, align_corners, scale_h, T)  # [new_h, old_h]
    along_x = op.MatMul(wx, grid)  # [B, old_h, new_w, C]
    rows = op.MatMul(wy, op.Reshape(along_x, const([0, old_h, -1], INT64)))  # [B, new_h, new_w * C]
    rows = op.Reshape(rows, const([0, -1, channels], INT64))
    return op.Cast(rows, to=dtype) if T != dtype else rows


def resample(tokens, old_h, old_w, new_h, new_w, num_prefix_tokens, mode, antialias, align_corners, scale_h,
             scale_w):
    """``posext::resample``: prefix rows, then the resampled grid."""
    rows = resampled_grid(tokens, old_h, old_w, new_h, new_w, num_prefix_tokens, mode, antialias,
                          align_corners, scale_h, scale_w)
    if num_prefix_tokens == 0:
        return rows
    prefix = op.Slice(tokens, const([0], INT64), const([num_prefix_tokens], INT64), const([1], INT64))
    return op.Concat(prefix, rows, axis=1)


def resample_add(x, pos_embed, old_h, old_w, new_h, new_w, num_prefix_tokens, mode, antialias, align_corners,
                 scale_h, scale_w):
    """``posext::resample_add``: x + the resampled table (rounded to the table's type, added in opmath)."""
    table = resample(pos_embed, old_h, old_w, new_h, new_w, num_prefix_tokens, mode, antialias, align_corners,
                     scale_h, scale_w)
    T = opmath(x.dtype)
    if T == x.dtype:
        return op.Add(x, table)
    return op.Cast(op.Add(op.Cast(x, to=T), op.Cast(table, to=T)), to=x.dtype)
