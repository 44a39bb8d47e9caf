#pragma once
// Factorized absolute positions (NaViT / Pix2struct): the lookup formula shared by the CPU and CUDA kernels.
// A token at fractional table position p (rows of a table of length L) reads rows i0 = clamp(floor(p), 0, L-1)
// and i1 = min(i0 + 1, L - 1) with weights (1 - f, f), f = p - i0: integer positions read one row exactly.
#include <cmath>
#include <cstdint>

#include "macros.h"

namespace posext {

enum FactorizedCombine : int { kSum = 0, kConcat = 1, kTable2d = 2 };

struct FactorizedParams {
  int combine = kSum;
  int64_t batch = 0, tokens = 0, channels = 0;     // x viewed as [B, S, C]
  int64_t x_batch_stride = 0, x_token_stride = 0;  // elements; channels contiguous
  int64_t len_y = 0, len_x = 0;                    // table rows along y and x
  int64_t channels_y = 0, channels_x = 0;          // table widths (concat: C = Cy + Cx)
};

template <typename T>
struct LerpTaps {
  int64_t i0, i1;
  T w0, w1;
};

template <typename T>
POSEXT_HD LerpTaps<T> lerp_taps(T p, int64_t len) {
  LerpTaps<T> taps;
  int64_t i0 = static_cast<int64_t>(floor(p));
  i0 = i0 < 0 ? 0 : (i0 > len - 1 ? len - 1 : i0);
  taps.i0 = i0;
  taps.i1 = i0 + 1 < len ? i0 + 1 : len - 1;
  taps.w1 = p - static_cast<T>(i0);
  taps.w0 = T(1) - taps.w1;
  return taps;
}

// One table axis at channel c: the token's two rows blended. An integer position (weights (1, 0)) reads its one
// row as it is: no 0 * other-row term, which would turn a non-finite value in a row it does not use into NaN.
template <typename T, typename table_t>
POSEXT_HD T lerp_at(const table_t* row0, const table_t* row1, T w0, T w1, int64_t c) {
  return w1 == T(0) ? static_cast<T>(row0[c]) : w0 * static_cast<T>(row0[c]) + w1 * static_cast<T>(row1[c]);
}

// The 2-D table at channel c: rows (y0, x0), (y0, x1), (y1, x0), (y1, x1); x is blended first.
template <typename T, typename table_t>
POSEXT_HD T bilerp_at(const table_t* r00, const table_t* r01, const table_t* r10, const table_t* r11,
                      const LerpTaps<T>& ty, const LerpTaps<T>& tx, int64_t c) {
  return ty.w0 * lerp_at<T>(r00, r01, tx.w0, tx.w1, c) + ty.w1 * lerp_at<T>(r10, r11, tx.w0, tx.w1, c);
}

// The position term for channel c of a token at (py, px): sum = y part + x part; concat = y part for c < Cy,
// else x part; 2-D table = bilerp. The CPU kernel runs the same formulas a row at a time.
template <typename T, typename table_t>
POSEXT_HD T factorized_term(const FactorizedParams& p, const table_t* table_y, const table_t* table_x,
                            const LerpTaps<T>& ty, const LerpTaps<T>& tx, int64_t c) {
  if (p.combine == kTable2d) {
    const int64_t C = p.channels, Lx = p.len_x;
    return bilerp_at<T>(table_y + (ty.i0 * Lx + tx.i0) * C, table_y + (ty.i0 * Lx + tx.i1) * C,
                        table_y + (ty.i1 * Lx + tx.i0) * C, table_y + (ty.i1 * Lx + tx.i1) * C, ty, tx, c);
  }
  const table_t *y0 = table_y + ty.i0 * p.channels_y, *y1 = table_y + ty.i1 * p.channels_y;
  if (p.combine == kConcat && c < p.channels_y) return lerp_at<T>(y0, y1, ty.w0, ty.w1, c);
  const table_t *x0 = table_x + tx.i0 * p.channels_x, *x1 = table_x + tx.i1 * p.channels_x;
  if (p.combine == kConcat) return lerp_at<T>(x0, x1, tx.w0, tx.w1, c - p.channels_y);
  return lerp_at<T>(y0, y1, ty.w0, ty.w1, c) + lerp_at<T>(x0, x1, tx.w0, tx.w1, c);
}

}  // namespace posext
