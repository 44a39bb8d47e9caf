"""ONNX translations of the table ops: ``sincos_2d``, ``sincos_1d``, ``sincos_3d``, ``rope_2d`` and
``factorized_add``, each the formula of its PyTorch contract (``posext.sincos``, ``posext.sincos3d``,
``posext.rope``, ``posext.factorized``) in ONNX operators, in the same types (sin-cos in float64, rounded
once; RoPE and factorized sums in opmath)."""
import math

import numpy as np
import torch
from onnxscript import ir
from onnxscript import opset18 as op

from ._resample import opmath
from ._weights import DOUBLE, END, INT64, as_int64, const, convert, slice_axis, unsqueeze

_TORCH_TO_ONNX = {torch.float32: ir.DataType.FLOAT, torch.float64: DOUBLE, torch.float16: ir.DataType.FLOAT16,
                  torch.bfloat16: ir.DataType.BFLOAT16}


def _onnx_dtype(dtype) -> ir.DataType:
    """A ScalarType argument as torch.onnx hands it over (a torch.dtype or its ONNX type code)."""
    if isinstance(dtype, torch.dtype):
        return _TORCH_TO_ONNX[dtype]
    return ir.DataType(dtype)


def _omega(band_width, denominator, temperature):
    """omega_k = 1 / T^(k / denominator) through the C library's pow, as csrc/sincos.h (float64 constant)."""
    values = [1.0 / math.pow(temperature, k / denominator) for k in range(band_width)]
    return op.Constant(value=ir.tensor(np.array(values, dtype=np.float64)))


def _vector(value):
    return op.Reshape(as_int64(value), const([1], INT64))


def sincos_2d(embed_dim, height, width, num_prefix_tokens, temperature, bands, freq_denominator_offset, dtype,
              device=None):
    """``posext::sincos_2d``: [P + H * W, D], band after band, prefix rows zero."""
    band_width = embed_dim // 4
    omega = op.Unsqueeze(_omega(band_width, band_width - freq_denominator_offset, temperature),
                         const([0], INT64))
    shape = op.Concat(_vector(height), _vector(width), const([band_width], INT64), axis=0)
    coords = {0: (width, [0]), 1: (height, [1])}  # axis 0 = x (columns), 1 = y (rows)
    parts = []
    for code in bands:
        axis, is_cos = divmod(code, 2)
        size, spread = coords[axis]
        angle = op.Mul(op.Unsqueeze(op.Cast(op.Range(const(0, INT64), as_int64(size), const(1, INT64)),
                                            to=DOUBLE), const([1], INT64)), omega)  # [size, F]
        value = op.Cos(angle) if is_cos else op.Sin(angle)
        parts.append(op.Expand(op.Unsqueeze(value, const(spread, INT64)), shape))
    grid = op.Reshape(op.Concat(*parts, axis=-1), const([-1, embed_dim], INT64))
    return _prefixed(grid, num_prefix_tokens, embed_dim, dtype)


def sincos_1d(positions, embed_dim, temperature, dtype):
    """``posext::sincos_1d``: [N, D] = [sin(p * omega), cos(p * omega)]."""
    half = embed_dim // 2
    angle = op.Mul(op.Unsqueeze(op.Cast(positions, to=DOUBLE), const([1], INT64)),
                   op.Unsqueeze(_omega(half, half, temperature), const([0], INT64)))
    return op.Cast(op.Concat(op.Sin(angle), op.Cos(angle), axis=1), to=_onnx_dtype(dtype))


def _prefixed(grid, num_prefix_tokens, embed_dim, dtype):
    grid = op.Cast(grid, to=_onnx_dtype(dtype))
    if num_prefix_tokens == 0:
        return grid
    zeros = op.Cast(op.Constant(value=ir.tensor(np.zeros((num_prefix_tokens, embed_dim)))),
                    to=_onnx_dtype(dtype))
    return op.Concat(zeros, grid, axis=0)


def _positions_3d(size, scale, float32_positions):
    """csrc/sincos3d.h position3d: 0 .. size-1 over the scale, rounded to float32 where asked (a float64
    quotient of two floats rounds as the float32 division would)."""
    q = op.Cast(op.Range(const(0, INT64), as_int64(size), const(1, INT64)), to=DOUBLE)
    if float32_positions:
        q = op.Cast(op.Cast(q, to=ir.DataType.FLOAT), to=DOUBLE)
        return op.Cast(op.Cast(op.Div(q, const(float(np.float32(scale)), DOUBLE)), to=ir.DataType.FLOAT),
                       to=DOUBLE)
    return q if scale == 1.0 else op.Div(q, const(scale, DOUBLE))


def sincos_3d(embed_dim, depth, height, width, num_prefix_tokens, temperature, bands, scales,
              float32_positions, dtype, device=None):
    """``posext::sincos_3d``: [P + T * H * W, D], tokens (t, h, w) row-major, prefix rows zero; band after
    band (each along t, h or w), or with no bands the interleaved sin/cos of the flat token index."""
    sizes = (depth, height, width)
    if not bands:
        tokens = op.Mul(as_int64(depth), op.Mul(as_int64(height), as_int64(width)))
        n = op.Cast(op.Range(const(0, INT64), tokens, const(1, INT64)), to=DOUBLE)
        divisors = [math.pow(temperature, (2 * (c // 2)) / embed_dim) for c in range(embed_dim)]
        angle = op.Div(op.Unsqueeze(n, const([1], INT64)),
                       op.Constant(value=ir.tensor(np.array([divisors], dtype=np.float64))))
        odd = op.Constant(value=ir.tensor(np.arange(embed_dim)[None, :] % 2 == 1))
        return _prefixed(op.Where(odd, op.Cos(angle), op.Sin(angle)), num_prefix_tokens, embed_dim, dtype)
    parts = []
    for code, band_width, freqs in zip(bands[0::3], bands[1::3], bands[2::3]):
        axis, is_cos = divmod(code, 2)
        shape = op.Concat(*[_vector(s) for s in sizes], const([band_width], INT64), axis=0)
        omega = op.Unsqueeze(_omega(band_width, freqs, temperature), const([0], INT64))
        angle = op.Mul(op.Unsqueeze(_positions_3d(sizes[axis], scales[axis], float32_positions),
                                    const([1], INT64)), omega)  # [size, F]
        value = op.Cos(angle) if is_cos else op.Sin(angle)
        spread = [a for a in range(3) if a != axis]  # [size, F] -> the axis' place in [T, H, W, F]
        parts.append(op.Expand(op.Unsqueeze(value, const(spread, INT64)), shape))
    grid = op.Reshape(op.Concat(*parts, axis=-1), const([-1, embed_dim], INT64))
    return _prefixed(grid, num_prefix_tokens, embed_dim, dtype)


def rope_2d(q, k, positions, freqs, num_prefix_tokens, layout, pairs):
    """``posext::rope_2d``: q and k with every grid token's pairs rotated by sum_a t_a * f_a (1 to 3 axes);
    prefix tokens kept. layout 0: [B, H, N, D], 1: [B, N, H, D]; pairs 0: interleaved (2p, 2p + 1), 1:
    halves."""
    # angle [Hf, M, D/2] ([B, Hf, M, D/2] per entry): sum over the axes a of positions[..., a] * freqs[a]
    angle = None
    per_entry = len(positions.shape) == 3
    for axis in range(positions.shape[-1]):
        freq = op.Transpose(slice_axis(freqs, axis, axis + 1, 0), perm=[1, 0, 2])  # [Hf, 1, D/2]
        t = slice_axis(positions, axis, axis + 1, 2 if per_entry else 1)  # [M, 1] or [B, M, 1]
        term = op.Mul(unsqueeze(t, 1) if per_entry else t, freq)  # times [Hf, 1, D/2]
        angle = term if angle is None else op.Add(angle, term)
    cos, sin = op.Cos(angle), op.Sin(angle)
    head_dim = q.shape[-1]
    rotary = 2 * freqs.shape[-1]  # channels [0, rotary) turn, the rest pass (partial RoPE)

    def rotate(x):
        heads_first = op.Transpose(x, perm=[0, 2, 1, 3]) if layout == 1 else x  # [B, H, N, D]
        T = opmath(x.dtype)
        grid = slice_axis(heads_first, num_prefix_tokens, END, 2)
        g = slice_axis(grid, 0, rotary, 3)
        g = convert(g, x.dtype, T)
        if pairs == 0:
            a, b = slice_axis(g, 0, rotary, 3, 2), slice_axis(g, 1, rotary, 3, 2)
        else:
            a, b = slice_axis(g, 0, rotary // 2, 3), slice_axis(g, rotary // 2, rotary, 3)
        a2 = op.Sub(op.Mul(a, cos), op.Mul(b, sin))
        b2 = op.Add(op.Mul(a, sin), op.Mul(b, cos))
        if pairs == 0:
            pairs_last = op.Concat(unsqueeze(a2, -1), unsqueeze(b2, -1), axis=-1)  # [B, H, M, D/2, 2]
            rot = op.Reshape(pairs_last, const([0, 0, 0, rotary], INT64))
        else:
            rot = op.Concat(a2, b2, axis=-1)
        rot = convert(rot, T, x.dtype)
        if rotary < head_dim:
            rot = op.Concat(rot, slice_axis(grid, rotary, head_dim, 3), axis=-1)
        if num_prefix_tokens:
            rot = op.Concat(slice_axis(heads_first, 0, num_prefix_tokens, 2), rot, axis=2)
        return op.Transpose(rot, perm=[0, 2, 1, 3]) if layout == 1 else rot

    return rotate(q), rotate(k)


def _lerp_taps(p, length, T):
    """csrc/factorized.h: rows i0 = clamp(floor(p), 0, L - 1), i1 = min(i0 + 1, L - 1), weights 1 - f, f."""
    i0 = op.Clip(op.Floor(p), const(0, T), const(length - 1, T))
    f = op.Sub(p, i0)
    i0 = op.Cast(i0, to=INT64)
    i1 = op.Min(op.Add(i0, const(1, INT64)), const(length - 1, INT64))
    return i0, i1, op.Sub(const(1, T), f), f


def _lerp(row0, row1, w0, w1, T):
    """An integer position (w1 == 0) reads its one row as it is."""
    w0, w1 = op.Unsqueeze(w0, const([-1], INT64)), op.Unsqueeze(w1, const([-1], INT64))
    return op.Where(op.Equal(w1, const(0, T)), row0, op.Add(op.Mul(w0, row0), op.Mul(w1, row1)))


def factorized_add(x, positions, table_y, table_x, combine):
    """``posext::factorized_add``: x + the table rows at (x, y) = positions (lerped when fractional);
    tokens whose position is negative (prefix tokens) unchanged. combine 0: sum, 1: concat, 2: a 2-D
    table."""
    T = positions.dtype
    valid = op.GreaterOrEqual(slice_axis(positions, 0, 1, 1), const(0, T))  # [S, 1]
    px = op.Max(op.Squeeze(slice_axis(positions, 0, 1, 1), const([1], INT64)), const(0, T))
    py = op.Max(op.Squeeze(slice_axis(positions, 1, 2, 1), const([1], INT64)), const(0, T))
    ty = convert(table_y, table_y.dtype, T)
    len_y = table_y.shape[0]

    def rows(table, index):
        return op.Gather(table, index, axis=0)

    y0, y1, wy0, wy1 = _lerp_taps(py, len_y, T)
    if combine == 2:
        len_x, channels = table_y.shape[1], table_y.shape[2]
        flat = op.Reshape(ty, const([len_y * len_x, channels], INT64))
        x0, x1, wx0, wx1 = _lerp_taps(px, len_x, T)

        def cell(yi, xi):
            return rows(flat, op.Add(op.Mul(yi, const(len_x, INT64)), xi))

        term = _lerp(_lerp(cell(y0, x0), cell(y0, x1), wx0, wx1, T),
                     _lerp(cell(y1, x0), cell(y1, x1), wx0, wx1, T), wy0, wy1, T)
    else:
        tx = convert(table_x, table_x.dtype, T)
        x0, x1, wx0, wx1 = _lerp_taps(px, table_x.shape[0], T)
        y_part = _lerp(rows(ty, y0), rows(ty, y1), wy0, wy1, T)
        x_part = _lerp(rows(tx, x0), rows(tx, x1), wx0, wx1, T)
        term = op.Add(y_part, x_part) if combine == 0 else op.Concat(y_part, x_part, axis=1)
    out = convert(op.Add(convert(x, x.dtype, T), term), T, x.dtype)
    return op.Where(valid, out, x)
