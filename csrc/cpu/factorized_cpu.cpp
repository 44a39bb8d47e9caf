// CPU factorized positions: one pass over the tokens, channels innermost; table gradient gathered per table row
// from the per-row token lists that factorized_op.cpp builds (taps of zero weight already left out).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu_isa.h"
#include "factorized_op.h"

namespace posext {
namespace {

constexpr int64_t kBlockTokens = 16;

// Channel loops of factorized.h's formulas, written with row pointers so that they vectorise (POSEXT_CPU_CLONES:
// also for AVX2); the tests for integer positions (weights (1, 0): one row read as it is) are made once per row.
template <typename scalar_t, typename T>
POSEXT_CPU_CLONES void lerp_rows(T* __restrict__ term, const scalar_t* r0, const scalar_t* r1, T w0, T w1,
                                 int64_t C) {
  if (w1 == T(0)) {
    for (int64_t c = 0; c < C; ++c) term[c] = static_cast<T>(r0[c]);
  } else {
    for (int64_t c = 0; c < C; ++c) term[c] = lerp_at<T>(r0, r1, w0, w1, c);
  }
}

template <typename scalar_t, typename T>
POSEXT_CPU_CLONES void sum_rows(T* __restrict__ term, const scalar_t* y0, const scalar_t* y1, const scalar_t* x0,
                                const scalar_t* x1, const LerpTaps<T>& ly, const LerpTaps<T>& lx, int64_t C) {
  if (ly.w1 == T(0) && lx.w1 == T(0)) {
    for (int64_t c = 0; c < C; ++c) term[c] = static_cast<T>(y0[c]) + static_cast<T>(x0[c]);
  } else {
    for (int64_t c = 0; c < C; ++c) term[c] = lerp_at<T>(y0, y1, ly.w0, ly.w1, c) + lerp_at<T>(x0, x1, lx.w0, lx.w1, c);
  }
}

template <typename scalar_t, typename T>
POSEXT_CPU_CLONES void bilerp_rows(T* __restrict__ term, const scalar_t* r00, const scalar_t* r01,
                                   const scalar_t* r10, const scalar_t* r11, const LerpTaps<T>& ly,
                                   const LerpTaps<T>& lx, int64_t C) {
  if (ly.w1 == T(0) && lx.w1 == T(0)) {
    for (int64_t c = 0; c < C; ++c) term[c] = static_cast<T>(r00[c]);
    return;
  }
  for (int64_t c = 0; c < C; ++c) term[c] = bilerp_at<T>(r00, r01, r10, r11, ly, lx, c);
}

template <typename scalar_t, typename T>
POSEXT_CPU_CLONES void add_term(scalar_t* __restrict__ out, const scalar_t* __restrict__ x,
                                const T* __restrict__ term, int64_t C) {
  for (int64_t c = 0; c < C; ++c) out[c] = static_cast<scalar_t>(static_cast<T>(x[c]) + term[c]);
}

template <typename scalar_t, typename T>
void position_term(T* term, const scalar_t* ty, const scalar_t* tx, const LerpTaps<T>& ly, const LerpTaps<T>& lx,
                   const FactorizedParams& p) {
  if (p.combine == kTable2d) {
    const int64_t C = p.channels, Lx = p.len_x;
    bilerp_rows<scalar_t, T>(term, ty + (ly.i0 * Lx + lx.i0) * C, ty + (ly.i0 * Lx + lx.i1) * C,
                             ty + (ly.i1 * Lx + lx.i0) * C, ty + (ly.i1 * Lx + lx.i1) * C, ly, lx, C);
    return;
  }
  const int64_t Cy = p.channels_y, Cx = p.channels_x;
  const scalar_t *y0 = ty + ly.i0 * Cy, *y1 = ty + ly.i1 * Cy, *x0 = tx + lx.i0 * Cx, *x1 = tx + lx.i1 * Cx;
  if (p.combine == kSum) {
    sum_rows<scalar_t, T>(term, y0, y1, x0, x1, ly, lx, p.channels);
  } else {
    lerp_rows<scalar_t, T>(term, y0, y1, ly.w0, ly.w1, Cy);
    lerp_rows<scalar_t, T>(term + Cy, x0, x1, lx.w0, lx.w1, Cx);
  }
}

// acc[c] += w * g[c]
template <typename scalar_t, typename T>
POSEXT_CPU_CLONES void accumulate_row(T* __restrict__ acc, const scalar_t* __restrict__ g, T w, int64_t C) {
  for (int64_t c = 0; c < C; ++c) acc[c] += w * static_cast<T>(g[c]);
}

}  // namespace

void factorized_add_cpu(const at::Tensor& x, const at::Tensor& positions, const at::Tensor& table_y,
                        const at::Tensor& table_x, at::Tensor& out, const FactorizedParams& p) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "posext_factorized_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const T* pos = positions.const_data_ptr<T>();
    const scalar_t* ty = table_y.const_data_ptr<scalar_t>();
    const scalar_t* tx = table_x.defined() ? table_x.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* op = out.data_ptr<scalar_t>();
    const int64_t C = p.channels, S = p.tokens;
    // Parallel over blocks of kBlockTokens sequence positions: each token's term is looked up once, then added to
    // all B rows, batch by batch, so that each batch entry reads and writes one contiguous run of rows.
    const int64_t blocks = (S + kBlockTokens - 1) / kBlockTokens;
    at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
      std::vector<T> terms(kBlockTokens * C);
      bool prefix[kBlockTokens];
      for (int64_t blk = begin; blk < end; ++blk) {
        const int64_t s0 = blk * kBlockTokens, count = std::min(kBlockTokens, S - s0);
        for (int64_t i = 0; i < count; ++i) {
          const T px = pos[2 * (s0 + i)], py = pos[2 * (s0 + i) + 1];
          prefix[i] = py < T(0) || px < T(0);
          if (!prefix[i])
            position_term<scalar_t, T>(terms.data() + i * C, ty, tx, lerp_taps<T>(py, p.len_y),
                                       lerp_taps<T>(px, p.len_x), p);
        }
        for (int64_t b = 0; b < p.batch; ++b)
          for (int64_t i = 0; i < count; ++i) {
            const scalar_t* xr = xp + b * p.x_batch_stride + (s0 + i) * p.x_token_stride;
            scalar_t* o = op + (b * S + s0 + i) * C;
            if (prefix[i]) {
              std::copy(xr, xr + C, o);
            } else {
              add_term<scalar_t, T>(o, xr, terms.data() + i * C, C);
            }
          }
      }
    });
  });
}

void factorized_table_grad_cpu(const at::Tensor& grad, const at::Tensor& offsets, const at::Tensor& tokens,
                               const at::Tensor& weights, int64_t channel_offset, at::Tensor& out) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "posext_factorized_grad_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    const scalar_t* g = grad.const_data_ptr<scalar_t>();
    const int64_t* off = offsets.const_data_ptr<int64_t>();
    const int64_t* tok = tokens.const_data_ptr<int64_t>();
    const T* w = weights.const_data_ptr<T>();
    scalar_t* o = out.data_ptr<scalar_t>();
    const int64_t rows = out.size(0), C = out.size(1), B = grad.size(0);
    const int64_t bs = grad.stride(0), ts = grad.stride(1);
    at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
      std::vector<T> acc(C);
      for (int64_t r = begin; r < end; ++r) {
        if (off[r] == off[r + 1]) {  // a row no token reads (most of a large 2-D table): all-zero bits
          std::memset(o + r * C, 0, C * sizeof(scalar_t));
          continue;
        }
        std::fill(acc.begin(), acc.end(), T(0));
        for (int64_t e = off[r]; e < off[r + 1]; ++e)
          for (int64_t b = 0; b < B; ++b) {
            accumulate_row<scalar_t, T>(acc.data(), g + b * bs + tok[e] * ts + channel_offset, w[e], C);
          }
        for (int64_t c = 0; c < C; ++c) o[r * C + c] = static_cast<scalar_t>(acc[c]);
      }
    });
  });
}

TORCH_LIBRARY_IMPL(posext, CPU, m) { FactorizedOps<factorized_add_cpu, factorized_table_grad_cpu>::register_kernels(m); }

}  // namespace posext
