"""NumPy float64 reference for ``torch.nn.functional.interpolate`` on 4-D NCHW input.

Written from the formulas of ``docs/resampling.md``, not from torch's code.
It is the independent reference for the fused resampling kernel.

Conventions
-----------
* Input ``x`` is NCHW: ``y`` = row = axis -2 (height H), ``x`` = column = last axis (width W).
* Every mode is separable and linear, so each axis is described by a dense weight matrix
  ``W[out, in]`` (:func:`axis_matrix`); taps whose index is clamped onto the border are summed
  into the same column. The 2-D result is ``out[n, c] = Wy @ x[n, c] @ Wx.T`` in float64.
* All arithmetic is float64 (torch's opmath type for double), except the legacy ``nearest``
  mode, whose scale torch holds in float32 (reproduced here on purpose).
* ``scale`` / ``scale_factor`` is the *user's* factor (output/input); the kernel scale
  (input distance per output step) is ``s = 1 / scale_factor`` when it is given
  (recompute_scale_factor=None), otherwise ``s = in / out``; align_corners=True overrides both
  with ``s = (in - 1) / (out - 1)`` (0 when out == 1).
* Token layout for :func:`resample_tokens`: ``[B, P + H*W, C]``, the P prefix tokens (cls,
  registers) first, then the grid row-major (y slow, x fast).

Kernels
-------
* bicubic (no AA): Keys cubic with A = -0.75, four taps i0-1..i0+2, tap indices clamped (replicate).
* bilinear (no AA): two taps i0, i1 with the source index clamped at 0 (align_corners=False).
* antialias (bilinear/bicubic): PIL-style support window widened by s when downsampling,
  Keys a = -0.5 (bicubic) or triangle (bilinear), out-of-range taps dropped, weights normalised.
* nearest: torch's legacy ``nearest`` (floor of ``i * scale`` with a float32 scale).

Same-size axes (observed on torch 2.14.1 CPU float64; CUDA not checked)
------------------------------------------------------------------------
* nearest, bilinear (AA or not) and AA bicubic: an axis whose output size equals its input
  size is passed through unchanged, even when a scale_factor makes s = 1/sf != 1 (e.g. in 14,
  sf 1.05 -> out 14). The CPU separable kernel skips that pass.
* non-AA bicubic has no such shortcut: that axis is resampled with s = 1/sf. (With ``size=``
  s = 1 gives the identity anyway, so "same shape -> copy" is only visible with scale_factor.)

Doc discrepancy: bicubic.md section 2 says non-AA bicubic with the same in/out shape is a copy.
torch 2.14.1 CPU does not copy when the shape comes from a scale_factor: in 14x11,
scale_factor=1.05 -> out 14x11, and the result equals Wy @ x @ Wx.T with s = 1/1.05 on both axes
(differs from the copy by up to 2.3 on N(0,1) data). This reference follows torch.
The doc's per-axis "pass skipped if that size is unchanged" (section 3, AA) also holds for
non-AA bilinear (section 4 "in == out -> identity" applies per axis, regardless of scale_factor).

Not reproduced (torch bug, not a convention): torch 2.14.1 CPU antialias with W_out == 1 and
H_out != H_in returns output row 0 in every output row (as if every row used row 0's vertical
weights), e.g. [2, 3, 9, 4] -> size (5, 1). This reference keeps the correct math (same as
W_out >= 2 or H_out == 1); the tests model the quirk on top of these matrices and pin it.

Matrix form caveat: a zero weight times inf/nan gives nan here; only finite data is compared.
"""
import math

import numpy as np

MODES = ("nearest", "bilinear", "bicubic")

_A_CUBIC = -0.75  # torch non-AA bicubic (OpenCV INTER_CUBIC)
_A_CUBIC_AA = -0.5  # torch AA bicubic (Pillow)


# --------------------------------------------------------------------------- sizes and scales


def output_size(in_size, scale_factor):
    """torch compute_output_size: floor(in * sf), product in float64."""
    return int(math.floor(float(in_size) * float(scale_factor)))


def kernel_scale(in_size, out_size, align_corners=False, scale=None):
    """Kernel scale s (input pixels per output pixel) for the bilinear/bicubic paths, in float64."""
    if align_corners:
        return (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
    if scale is not None and scale > 0:
        return 1.0 / float(scale)
    return in_size / out_size


# --------------------------------------------------------------------------- 1-D kernels


def _cc1(x, a):
    """Keys cubic for |x| <= 1 (Horner form): ((a+2) x - (a+3)) x^2 + 1."""
    return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0


def _cc2(x, a):
    """Keys cubic for 1 < |x| < 2 (Horner form): ((a x - 5a) x + 8a) x - 4a."""
    return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a


def _keys(x, a):
    x = abs(x)
    if x < 1.0:
        return _cc1(x, a)
    if x < 2.0:
        return _cc2(x, a)
    return 0.0


def _triangle(x):
    return max(0.0, 1.0 - abs(x))


# --------------------------------------------------------------------------- per-axis matrices


def _nearest_matrix(in_size, out_size, scale):
    w = np.zeros((out_size, in_size), dtype=np.float64)
    if out_size == in_size:
        src = np.arange(out_size)
    elif out_size == 2 * in_size:
        src = np.arange(out_size) >> 1
    else:
        # torch keeps this scale in float32: (float)(1.0 / sf) or (float)in / (float)out.
        if scale is not None and scale > 0:
            s32 = np.float32(1.0 / float(scale))
        else:
            s32 = np.float32(in_size) / np.float32(out_size)
        prod = np.arange(out_size, dtype=np.float32) * s32  # float32 product, as in torch
        src = np.minimum(np.floor(prod).astype(np.int64), in_size - 1)
    w[np.arange(out_size), src] = 1.0
    return w


def _bilinear_matrix(in_size, out_size, s, align_corners):
    w = np.zeros((out_size, in_size), dtype=np.float64)
    for i in range(out_size):
        r = s * i if align_corners else s * (i + 0.5) - 0.5
        if r < 0.0:  # linear modes clamp a negative source to 0
            r = 0.0
        i0 = min(int(math.floor(r)), in_size - 1)
        l1 = min(max(r - i0, 0.0), 1.0)
        i1 = i0 + 1 if i0 < in_size - 1 else i0
        l0 = 1.0 - l1
        w[i, i0] += l0
        w[i, i1] += l1
    return w


def _bicubic_matrix(in_size, out_size, s, align_corners):
    a = _A_CUBIC
    w = np.zeros((out_size, in_size), dtype=np.float64)
    for i in range(out_size):
        r = s * i if align_corners else s * (i + 0.5) - 0.5  # negative r kept
        i0 = min(int(math.floor(r)), in_size - 1)
        t = min(max(r - i0, 0.0), 1.0)
        taps = (_cc2(t + 1.0, a), _cc1(t, a), _cc1(1.0 - t, a), _cc2((1.0 - t) + 1.0, a))
        for k, wk in enumerate(taps):
            j = min(max(i0 - 1 + k, 0), in_size - 1)  # replicate border
            w[i, j] += wk
    return w


def _antialias_matrix(in_size, out_size, s, mode):
    if mode == "bicubic":
        n, filt = 4, (lambda v: _keys(v, _A_CUBIC_AA))
    else:
        n, filt = 2, _triangle
    support = (n / 2.0) * s if s >= 1.0 else n / 2.0
    invscale = 1.0 / s if s >= 1.0 else 1.0
    max_taps = int(math.ceil(support)) * 2 + 1
    w = np.zeros((out_size, in_size), dtype=np.float64)
    for i in range(out_size):
        center = s * (i + 0.5)
        xmin = max(int(center - support + 0.5), 0)  # int() truncates toward zero, as in C++
        xsize = min(int(center + support + 0.5), in_size) - xmin
        xsize = min(max(xsize, 0), max_taps)
        ws = [filt(((j + xmin) - center + 0.5) * invscale) for j in range(xsize)]
        total = sum(ws)
        for j, wj in enumerate(ws):
            w[i, xmin + j] = wj / total if total != 0.0 else wj
    return w


def axis_matrix(in_size, out_size, mode, antialias=False, align_corners=False, scale=None):
    """Dense float64 weight matrix [out_size, in_size] of one axis.

    ``scale`` is the user's scale factor for this axis (torch's ``scales_h``/``scales_w``,
    output/input), or None when the output size was given.
    """
    if mode not in MODES:
        raise ValueError(f"unsupported mode {mode!r}")
    align_corners = bool(align_corners)
    if mode == "nearest":
        if antialias or align_corners:
            raise ValueError("nearest supports neither antialias nor align_corners")
        return _nearest_matrix(in_size, out_size, scale)
    if out_size == in_size and (antialias or mode == "bilinear"):
        # torch's separable CPU kernel skips an axis whose size is unchanged (scale ignored).
        return np.eye(in_size, dtype=np.float64)
    s = kernel_scale(in_size, out_size, align_corners, scale)
    if antialias:
        return _antialias_matrix(in_size, out_size, s, mode)
    if mode == "bilinear":
        return _bilinear_matrix(in_size, out_size, s, align_corners)
    return _bicubic_matrix(in_size, out_size, s, align_corners)


# --------------------------------------------------------------------------- 2-D interpolate


def _pair(v):
    if v is None:
        return None
    if np.isscalar(v):
        return (v, v)
    v = tuple(v)
    if len(v) != 2:
        raise ValueError("expected a scalar or a pair")
    return v


def interpolate(x, size=None, scale_factor=None, mode="nearest", antialias=False, align_corners=None):
    """float64 reference of F.interpolate for 4-D NCHW input (recompute_scale_factor=None)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 4:
        raise ValueError("expected NCHW input")
    if (size is None) == (scale_factor is None):
        raise ValueError("give exactly one of size / scale_factor")
    in_h, in_w = x.shape[-2:]
    if size is not None:
        out_h, out_w = (int(v) for v in _pair(size))
        sy = sx = None
    else:
        sy, sx = (float(v) for v in _pair(scale_factor))
        out_h, out_w = output_size(in_h, sy), output_size(in_w, sx)
    # No whole-tensor copy shortcut: with size=, same-size axes are exact identity matrices; with a
    # scale_factor, non-AA bicubic really resamples (see "Doc discrepancy" above).
    wy = axis_matrix(in_h, out_h, mode, antialias, align_corners, sy)
    wx = axis_matrix(in_w, out_w, mode, antialias, align_corners, sx)
    return np.einsum("oh,nchw,pw->ncop", wy, x, wx, optimize=True)


def resample_tokens(pos_embed, new_size, old_size, num_prefix_tokens=0, **kw):
    """Resample a token-layout position embedding [B, P + H*W, C] to [B, P + H'*W', C].

    Prefix rows are copied; grid rows (row-major, y slow, x fast) go through
    :func:`interpolate` as [B, C, H, W]. ``kw`` is passed to :func:`interpolate`
    (``mode`` defaults to "bicubic"); pass ``new_size=None`` with ``scale_factor=...``
    to use the scale-factor path.
    """
    pos_embed = np.asarray(pos_embed, dtype=np.float64)
    kw.setdefault("mode", "bicubic")
    b, t, c = pos_embed.shape
    h, w = old_size
    p = int(num_prefix_tokens)
    if t != p + h * w:
        raise ValueError(f"{t} tokens != {p} + {h}*{w}")
    prefix, grid = pos_embed[:, :p], pos_embed[:, p:]
    grid = grid.reshape(b, h, w, c).transpose(0, 3, 1, 2)
    out = interpolate(grid, size=None if new_size is None else tuple(new_size), **kw)
    out = out.transpose(0, 2, 3, 1).reshape(b, out.shape[2] * out.shape[3], c)
    return np.concatenate([prefix, out], axis=1)
