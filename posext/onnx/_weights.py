"""Per-axis resampling matrices in standard ONNX, built from the sizes the graph sees at run time.

An axis maps ``in_size`` stored positions (known when exporting) to ``out_size`` new ones (a Python int, or an
INT64 scalar of the graph when the image size is dynamic). Its matrix ``W [out, in]`` holds, row by row, the
taps and weights of posext's kernels (``csrc/resample.h``), step for step in the same type T (float32 for
float32 / float16 / bfloat16 tables, float64 for float64), so a grid resample is ``Wy @ X @ Wx^T``.
``axis_weights`` computes such rows for any tensor of output indices, each with its own output size (the
images of a variable-resolution batch); ``axis_matrix`` is the one-size case:

* scale: ``in / out``; ``1 / scale_factor`` where the caller gave one; ``(in - 1) / (out - 1)`` (0 for one
  output) with ``align_corners``;
* bicubic: Keys A = -0.75 at the four taps ``i0 - 1 .. i0 + 2`` clamped to the border, weights of clamped taps
  added up; bilinear: two taps, the source clamped at 0; nearest: ``floor(i * scale)`` with a float32 scale
  (``i >> 1`` when the size doubles), as torch's CPU kernel;
* antialias: the PIL-style window ``[xmin, xmin + xsize)`` around ``center = scale * (i + 0.5)`` with the
  bicubic a = -0.5 or triangle filter, normalised by its sum.

An axis whose size does not change comes out as the identity (every formula above gives weights exactly 1 and
0 there), so no branch on the run-time size is needed. The functions here are traced by onnxscript inside
``torch.onnx.export``: each ``op.X`` call adds a node.
"""
import numpy as np
from onnxscript import ir
from onnxscript import opset18 as op

FLOAT, DOUBLE, INT64 = ir.DataType.FLOAT, ir.DataType.DOUBLE, ir.DataType.INT64
NEAREST, BILINEAR, BICUBIC = 0, 1, 2  # posext.resample.MODES
END = 2**62  # a Slice end past any size: to the end


def const(value, dtype: ir.DataType):
    """A scalar constant of ``dtype`` (float64 constants keep every bit of ``value``)."""
    return op.Constant(value=ir.tensor(np.array(value, dtype=dtype.numpy())))


def as_int64(value):
    """A size as an INT64 scalar of the graph (a Python int becomes a constant)."""
    return const(value, INT64) if isinstance(value, int) else value


def _range(size, dtype):
    """``[0, 1, ..., size - 1]`` in ``dtype``."""
    return op.Cast(op.Range(const(0, INT64), as_int64(size), const(1, INT64)), to=dtype)


def unsqueeze(x, axis: int):
    return op.Unsqueeze(x, const([axis], INT64))


def _unsqueeze_last(x):
    return unsqueeze(x, -1)


def convert(x, from_type: ir.DataType, to_type: ir.DataType):
    """x (of ``from_type``) as ``to_type``: a Cast node only where the types differ."""
    return x if from_type == to_type else op.Cast(x, to=to_type)


def slice_axis(x, start: int, end: int, axis: int, step: int = 1):
    """``x[start:end:step]`` along ``axis`` (``end`` past the size: to the end)."""
    return op.Slice(x, const([start], INT64), const([end], INT64), const([axis], INT64), const([step], INT64))


def first_dim(x):
    """``x.shape[0]`` as an INT64 scalar of the graph."""
    return op.Squeeze(op.Shape(x, start=0, end=1), const([0], INT64))


def _scale(in_size, out_t, align_corners, user_scale, T):
    """The kernel scale for output size ``out_t`` (T, any shape) (``axis_scale`` of csrc/resample.h)."""
    if align_corners:
        ratio = op.Div(const(in_size - 1, T), op.Sub(out_t, const(1, T)))
        return op.Where(op.Greater(out_t, const(1, T)), ratio, const(0, T))
    if user_scale > 0:
        return const(1.0 / user_scale, T)
    return op.Div(const(in_size, T), out_t)


def _one_hot_rows(idx, w, in_size, T):
    """``W[..., i] = sum_k w[..., k] * (idx[..., k] == i)``: taps -> dense rows (border taps that clamp to
    one index add their weights); ``w`` None: one tap of weight 1."""
    hit = op.Cast(op.Equal(_unsqueeze_last(idx), _range(in_size, INT64)), to=T)
    if w is None:
        return op.Squeeze(hit, const([-2], INT64))
    return op.ReduceSum(op.Mul(hit, _unsqueeze_last(w)), const([-2], INT64), keepdims=0)


def _cubic_near(x, A, T):  # |x| <= 1: ((A + 2) x - (A + 3)) x x + 1
    return op.Add(op.Mul(op.Mul(op.Sub(op.Mul(const(A + 2, T), x), const(A + 3, T)), x), x), const(1, T))


def _cubic_far(x, A, T):  # 1 < |x| < 2: ((A x - 5A) x + 8A) x - 4A
    inner = op.Add(op.Mul(op.Sub(op.Mul(const(A, T), x), const(5 * A, T)), x), const(8 * A, T))
    return op.Sub(op.Mul(inner, x), const(4 * A, T))


def _nearest(in_size, o, out, user_scale):
    """Nearest taps [..., 1] (float32 arithmetic whatever the table type, as the kernels)."""
    if user_scale > 0:
        scale = const(np.float32(1.0 / user_scale), FLOAT)
    else:
        scale = op.Div(const(in_size, FLOAT), op.Cast(out, to=FLOAT))
    src = op.Cast(op.Floor(op.Mul(op.Cast(o, to=FLOAT), scale)), to=INT64)
    src = op.Where(op.Equal(out, const(2 * in_size, INT64)), op.Div(o, const(2, INT64)), src)
    return _unsqueeze_last(op.Min(src, const(in_size - 1, INT64)))


def _linear_taps(in_size, o, out, mode, align_corners, user_scale, T):
    """Bilinear / bicubic taps (idx [..., K] int64, w [..., K] T) without antialiasing."""
    scale = _scale(in_size, op.Cast(out, to=T), align_corners, user_scale, T)
    o = op.Cast(o, to=T)
    if align_corners:
        src = op.Mul(scale, o)
    else:
        src = op.Sub(op.Mul(scale, op.Add(o, const(0.5, T))), const(0.5, T))
    if mode == BILINEAR:
        src = op.Max(src, const(0, T))
    i0 = op.Min(op.Floor(src), const(in_size - 1, T))
    t = op.Clip(op.Sub(src, i0), const(0, T), const(1, T))
    i0 = op.Cast(i0, to=INT64)
    last = const(in_size - 1, INT64)
    if mode == BILINEAR:
        i1 = op.Where(op.Less(i0, last), op.Add(i0, const(1, INT64)), i0)
        idx = [i0, i1]
        w = [op.Sub(const(1, T), t), t]
    else:
        A, t1 = -0.75, op.Sub(const(1, T), t)
        w = [_cubic_far(op.Add(t, const(1, T)), A, T), _cubic_near(t, A, T), _cubic_near(t1, A, T),
             _cubic_far(op.Add(t1, const(1, T)), A, T)]
        idx = [op.Clip(op.Add(i0, const(k - 1, INT64)), const(0, INT64), last) for k in range(4)]
    return (op.Concat(*[_unsqueeze_last(i) for i in idx], axis=-1),
            op.Concat(*[_unsqueeze_last(v) for v in w], axis=-1))


def _aa_filter(x, mode, T):
    x = op.Abs(x)
    zero = const(0, T)
    if mode == BILINEAR:
        return op.Where(op.Less(x, const(1, T)), op.Sub(const(1, T), x), zero)
    near, far = _cubic_near(x, -0.5, T), _cubic_far(x, -0.5, T)
    return op.Where(op.Less(x, const(1, T)), near, op.Where(op.Less(x, const(2, T)), far, zero))


def _antialiased(in_size, o, out, mode, align_corners, user_scale, T):
    """PIL-style rows [..., in] (``aa_window`` / ``aa_window_weight`` of csrc/resample.h)."""
    scale = _unsqueeze_last(_scale(in_size, op.Cast(out, to=T), align_corners, user_scale, T))
    one, half = const(1, T), const(0.5, T)
    half_taps = const(1 if mode == BILINEAR else 2, T)
    wide = op.GreaterOrEqual(scale, one)
    support = op.Where(wide, op.Mul(half_taps, scale), half_taps)
    invscale = op.Where(wide, op.Div(one, scale), one)
    center = op.Mul(scale, op.Add(_unsqueeze_last(op.Cast(o, to=T)), half))
    # trunc == floor here: a negative start is raised to 0 either way, the end is positive
    xmin = op.Max(op.Floor(op.Add(op.Sub(center, support), half)), const(0, T))
    xend = op.Min(op.Floor(op.Add(op.Add(center, support), half)), const(in_size, T))
    max_taps = op.Add(op.Mul(const(2, T), op.Ceil(support)), one)
    xsize = op.Min(op.Max(op.Sub(xend, xmin), const(0, T)), max_taps)  # Clip takes scalar bounds only
    i = _range(in_size, T)
    inside = op.And(op.GreaterOrEqual(i, xmin), op.Less(i, op.Add(xmin, xsize)))
    w = op.Where(inside, _aa_filter(op.Mul(op.Add(op.Sub(i, center), half), invscale), mode, T), const(0, T))
    total = op.ReduceSum(w, const([-1], INT64), keepdims=1)
    return op.Where(op.Equal(total, const(0, T)), w, op.Div(w, total))


def axis_weights(in_size: int, o, out, mode: int, antialias: bool, align_corners: bool, user_scale: float,
                 T: ir.DataType):
    """Rows ``[..., in_size]`` in T: the weights of output index ``o`` for output size ``out`` (INT64
    tensors of one broadcast shape)."""
    if antialias:
        return _antialiased(in_size, o, out, mode, align_corners, user_scale, T)
    if mode == NEAREST:
        return _one_hot_rows(_nearest(in_size, o, out, user_scale), None, in_size, T)
    idx, w = _linear_taps(in_size, o, out, mode, align_corners, user_scale, T)
    return _one_hot_rows(idx, w, in_size, T)


def axis_matrix(in_size: int, out_size, mode: int, antialias: bool, align_corners: bool, user_scale: float,
                T: ir.DataType):
    """``W [out_size, in_size]`` of one axis in T."""
    return axis_weights(in_size, _range(out_size, INT64), as_int64(out_size), mode, antialias, align_corners,
                        user_scale, T)
