#pragma once
// Resampling of position-embedding grids: the index/weight formula shared by the CPU and CUDA kernels.
//
// It reproduces torch.nn.functional.interpolate (CPU, torch 2.x), see docs/resampling.md:
//   scale  size=: in/out; scale_factor=: 1/sf; align_corners: (in-1)/(out-1), 0 when out == 1.
//   bicubic  Keys A = -0.75, four taps i0-1..i0+2 clamped to the border (replicate).
//   bilinear two taps, source index clamped at 0; nearest: floor(i * scale) with a float32 scale.
//   antialias (bicubic a = -0.5 / triangle): PIL-style window, out-of-range taps dropped, weights normalised.
// Every axis is a banded matrix W [out, in]; a grid resample is out = Wy * X * Wx^T per channel, evaluated
// x first (one tap row at a time), then y, in opmath T (float for half/bf16/float, double for double).
#include <cmath>
#include <cstdint>

#include "macros.h"

namespace posext {

enum ResampleMode : int { kNearest = 0, kBilinear = 1, kBicubic = 2 };

struct ResampleAxis {
  int64_t in_size = 0, out_size = 0;
  double user_scale = 0.0;  // scale_factor for this axis, <= 0 when the output size was given
  int max_taps = 0;         // taps per output index (AA: 2 * ceil(support) + 1), set by make_axis()
  bool identity = false;    // this axis maps i -> i (torch skips it), set by make_axis()
};

struct ResampleParams {
  int mode = kBicubic;
  bool antialias = false;
  bool align_corners = false;
  ResampleAxis y, x;
  int64_t batch = 0, channels = 0, num_prefix_tokens = 0;
  // Element strides of the input [B, P + H*W, C] (channels are contiguous) and of the output.
  int64_t in_batch_stride = 0, in_token_stride = 0;
  int64_t out_batch_stride = 0, out_token_stride = 0;
  // Fused add (resample_add): out[b'] = addend[b'] + resampled table, b' < add_batch; each b' reads table entry
  // b' when the table has a batch of its own, else entry 0. add_batch = 0: plain resampling into out.
  int64_t add_batch = 0, add_batch_stride = 0, add_token_stride = 0;
};

// Batch entries of the addend fed by table entry b: all of them for a single shared table, else b alone.
POSEXT_HD void add_targets(const ResampleParams& p, int64_t b, int64_t& first, int64_t& last) {
  const bool shared = p.batch == 1;
  first = shared ? 0 : b;
  last = shared ? p.add_batch : b + 1;
}

template <typename T>
POSEXT_HD T axis_scale(const ResampleAxis& a, bool align_corners) {
  if (align_corners) return a.out_size > 1 ? static_cast<T>(a.in_size - 1) / static_cast<T>(a.out_size - 1) : T(0);
  if (a.user_scale > 0) return static_cast<T>(1.0 / a.user_scale);
  return static_cast<T>(a.in_size) / static_cast<T>(a.out_size);
}

template <typename T>
POSEXT_HD T cubic_near(T x, T A) { return ((A + 2) * x - (A + 3)) * x * x + 1; }  // |x| <= 1
template <typename T>
POSEXT_HD T cubic_far(T x, T A) { return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; }  // 1 < |x| < 2

template <typename T>
POSEXT_HD T aa_filter(int mode, T x) {
  x = x < T(0) ? -x : x;
  if (mode == kBilinear) return x < T(1) ? T(1) - x : T(0);
  const T a = T(-0.5);
  if (x < T(1)) return cubic_near<T>(x, a);
  if (x < T(2)) return cubic_far<T>(x, a);
  return T(0);
}

template <typename T>
POSEXT_HD T aa_support(int mode, T scale) {
  const T half_taps = mode == kBilinear ? T(1) : T(2);
  return scale >= T(1) ? half_taps * scale : half_taps;
}

POSEXT_HD int64_t clamp_index(int64_t i, int64_t size) { return i < 0 ? 0 : (i >= size ? size - 1 : i); }

// AA window of output index i: input indices [xmin, xmin + xsize), filter argument (j - center + 0.5) * invscale.
template <typename T>
struct AAWindow {
  int64_t xmin, xsize;
  T center, invscale;
};

template <typename T>
POSEXT_HD AAWindow<T> aa_window(const ResampleAxis& a, int mode, bool align_corners, int64_t i) {
  const T scale = axis_scale<T>(a, align_corners);
  const T support = aa_support<T>(mode, scale);
  AAWindow<T> win;
  win.center = static_cast<T>(scale * (i + 0.5));
  win.invscale = scale >= T(1) ? T(1) / scale : T(1);
  int64_t xmin = static_cast<int64_t>(win.center - support + T(0.5));
  xmin = xmin < 0 ? 0 : xmin;
  int64_t xend = static_cast<int64_t>(win.center + support + T(0.5));
  xend = xend > a.in_size ? a.in_size : xend;
  const int64_t xsize = xend - xmin;
  win.xmin = xmin;
  win.xsize = xsize < 0 ? 0 : (xsize > a.max_taps ? a.max_taps : xsize);  // torch clips rounding overshoot
  return win;
}

template <typename T>
POSEXT_HD T aa_window_weight(const AAWindow<T>& win, int mode, int64_t j) {
  return aa_filter<T>(mode, static_cast<T>((static_cast<T>(j + win.xmin) - win.center + T(0.5)) * win.invscale));
}

// Taps per output index for this axis (host only). AA: 2 * ceil(support) + 1 with the support computed in T, as
// torch does, then capped at in_size + 1: a wider window only adds taps that fall outside the input, so the cap
// changes no result, and it keeps every count finite whatever the scale.
template <typename T>
inline int axis_max_taps(const ResampleAxis& a, int mode, bool antialias, bool align_corners) {
  if (a.identity) return 1;
  if (!antialias) return mode == kBicubic ? 4 : (mode == kBilinear ? 2 : 1);
  const double support = static_cast<double>(aa_support<T>(mode, axis_scale<T>(a, align_corners)));
  const double cap = a.in_size + 1.0 < 1e9 ? a.in_size + 1.0 : 1e9;
  const double taps = 2.0 * ceil(support) + 1.0;
  return static_cast<int>(taps < cap ? taps : cap);
}

// torch skips (copies) an axis whose size is unchanged, except non-AA bicubic with a user scale != 1.
POSEXT_HD bool axis_is_identity(const ResampleAxis& a, int mode, bool antialias, bool align_corners) {
  if (a.in_size != a.out_size) return false;
  return antialias || mode != kBicubic || align_corners || a.user_scale <= 0;
}

// Taps of output index i along one axis: writes `count` (<= a.max_taps) input indices and weights, in the
// order the sums are taken. Indices may repeat at borders (non-AA cubic clamps, as torch does).
template <typename T>
POSEXT_HD int axis_taps(const ResampleAxis& a, int mode, bool antialias, bool align_corners, int64_t i,
                        int64_t* idx, T* w) {
  if (a.identity) {
    idx[0] = i;
    w[0] = T(1);
    return 1;
  }
  if (antialias) {
    const AAWindow<T> win = aa_window<T>(a, mode, align_corners, i);
    T total = T(0);
    for (int64_t j = 0; j < win.xsize; ++j) {
      idx[j] = win.xmin + j;
      w[j] = aa_window_weight<T>(win, mode, j);
      total += w[j];
    }
    if (total != T(0))
      for (int64_t j = 0; j < win.xsize; ++j) w[j] /= total;
    return static_cast<int>(win.xsize);
  }
  if (mode == kNearest) {
    const float s = a.user_scale > 0 ? static_cast<float>(1.0 / a.user_scale)
                                     : static_cast<float>(a.in_size) / static_cast<float>(a.out_size);
    const int64_t src = a.out_size == 2 * a.in_size ? (i >> 1)
                                                    : static_cast<int64_t>(floorf(static_cast<float>(i) * s));
    idx[0] = src < a.in_size - 1 ? src : a.in_size - 1;
    w[0] = T(1);
    return 1;
  }
  const T scale = axis_scale<T>(a, align_corners);
  const bool cubic = mode == kBicubic;
  T src = align_corners ? scale * static_cast<T>(i) : scale * (static_cast<T>(i) + T(0.5)) - T(0.5);
  if (!cubic && src < T(0)) src = T(0);
  int64_t i0 = static_cast<int64_t>(floor(src));
  i0 = i0 < a.in_size - 1 ? i0 : a.in_size - 1;
  T t = src - static_cast<T>(i0);
  t = t < T(0) ? T(0) : (t > T(1) ? T(1) : t);
  if (cubic) {
    const T A = T(-0.75);
    const T t1 = T(1) - t;
    w[0] = cubic_far<T>(static_cast<T>(t + T(1)), A);
    w[1] = cubic_near<T>(t, A);
    w[2] = cubic_near<T>(t1, A);
    w[3] = cubic_far<T>(static_cast<T>(t1 + T(1)), A);
    for (int j = 0; j < 4; ++j) idx[j] = clamp_index(i0 - 1 + j, a.in_size);
    return 4;
  }
  idx[0] = i0;
  idx[1] = i0 < a.in_size - 1 ? i0 + 1 : i0;
  w[0] = T(1) - t;
  w[1] = t;
  return 2;
}

// ---- backward: the transposed matrix W^T, gathered per input index (deterministic, no atomics).

// A superset [lo, hi] of the output indices whose taps can reach input index i.
template <typename T>
POSEXT_HD void outputs_reaching(const ResampleAxis& a, int mode, bool antialias, bool align_corners, int64_t i,
                                int64_t& lo, int64_t& hi) {
  if (a.identity) {
    lo = hi = i;
    return;
  }
  lo = 0;
  hi = a.out_size - 1;
  const double s = static_cast<double>(axis_scale<T>(a, align_corners));
  double l, h;
  if (mode == kNearest && !antialias) {
    const double sf = a.user_scale > 0 ? 1.0 / a.user_scale : static_cast<double>(a.in_size) / a.out_size;
    if (sf <= 0) return;
    l = i / sf - 2;
    h = (i + 1) / sf + 2;
  } else {
    if (s <= 0) return;
    const double reach = antialias ? static_cast<double>(aa_support<T>(mode, static_cast<T>(s))) + 1.0 : 2.5;
    l = (i - reach) / s - 2;
    h = (i + reach) / s + 2;
  }
  // Bounds are compared in double before any cast: past the last output, none reaches i (an empty range).
  if (i > 0 && l > 0) lo = l < static_cast<double>(a.out_size) ? static_cast<int64_t>(l) : a.out_size;  // i == 0 gathers
  if (i < a.in_size - 1 && h < static_cast<double>(hi)) hi = h > 0 ? static_cast<int64_t>(h) : 0;      // clamped taps
}

// W[o][i]: the summed weight of output o's taps that land on input i (0 when none do).
template <typename T>
POSEXT_HD T transposed_weight(const ResampleAxis& a, int mode, bool antialias, bool align_corners, int64_t o,
                              int64_t i) {
  if (a.identity) return o == i ? T(1) : T(0);
  if (antialias) {
    const AAWindow<T> win = aa_window<T>(a, mode, align_corners, o);
    if (i < win.xmin || i >= win.xmin + win.xsize) return T(0);
    T total = T(0);
    for (int64_t j = 0; j < win.xsize; ++j) total += aa_window_weight<T>(win, mode, j);
    const T w = aa_window_weight<T>(win, mode, i - win.xmin);
    return total != T(0) ? w / total : w;
  }
  int64_t idx[4];
  T w[4];
  const int n = axis_taps<T>(a, mode, false, align_corners, o, idx, w);
  T sum = T(0);
  for (int j = 0; j < n; ++j)
    if (idx[j] == i) sum += w[j];
  return sum;
}

}  // namespace posext
