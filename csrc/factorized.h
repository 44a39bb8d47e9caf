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

// The position term for channel c of a token at (py, px); tables already offset to their rows' start.
template <typename T, typename table_t>
POSEXT_HD T factorized_term(const FactorizedParams& p, const table_t* table_y, const table_t* table_x,
                            const LerpTaps<T>& ty, const LerpTaps<T>& tx, int64_t c) {
  if (p.combine == kTable2d) {
    const int64_t C = p.channels, Lx = p.len_x;
    const T top = tx.w0 * static_cast<T>(table_y[(ty.i0 * Lx + tx.i0) * C + c]) +
                  tx.w1 * static_cast<T>(table_y[(ty.i0 * Lx + tx.i1) * C + c]);
    const T bottom = tx.w0 * static_cast<T>(table_y[(ty.i1 * Lx + tx.i0) * C + c]) +
                     tx.w1 * static_cast<T>(table_y[(ty.i1 * Lx + tx.i1) * C + c]);
    return ty.w0 * top + ty.w1 * bottom;
  }
  if (p.combine == kConcat) {
    if (c < p.channels_y)
      return ty.w0 * static_cast<T>(table_y[ty.i0 * p.channels_y + c]) +
             ty.w1 * static_cast<T>(table_y[ty.i1 * p.channels_y + c]);
    const int64_t cx = c - p.channels_y;
    return tx.w0 * static_cast<T>(table_x[tx.i0 * p.channels_x + cx]) +
           tx.w1 * static_cast<T>(table_x[tx.i1 * p.channels_x + cx]);
  }
  return (ty.w0 * static_cast<T>(table_y[ty.i0 * p.channels_y + c]) +
          ty.w1 * static_cast<T>(table_y[ty.i1 * p.channels_y + c])) +
         (tx.w0 * static_cast<T>(table_x[tx.i0 * p.channels_x + c]) +
          tx.w1 * static_cast<T>(table_x[tx.i1 * p.channels_x + c]));
}

}  // namespace posext
