// CPU factorized positions: one pass over the tokens, channels innermost; table gradient gathered per table row.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <vector>

#include "ops.h"

namespace posext {
namespace {

// One token's position term, the same sums as factorized_term() in factorized.h, written per combine mode with
// row pointers so the channel loops carry no branches and vectorise.
template <typename scalar_t, typename T>
inline void position_term(T* __restrict__ term, const scalar_t* ty, const scalar_t* tx, const LerpTaps<T>& lty,
                          const LerpTaps<T>& ltx, const FactorizedParams& p) {
  const int64_t C = p.channels;
  if (p.combine == kTable2d) {
    const int64_t Lx = p.len_x;
    const scalar_t *a = ty + (lty.i0 * Lx + ltx.i0) * C, *b = ty + (lty.i0 * Lx + ltx.i1) * C;
    const scalar_t *c0 = ty + (lty.i1 * Lx + ltx.i0) * C, *d = ty + (lty.i1 * Lx + ltx.i1) * C;
    for (int64_t c = 0; c < C; ++c) {
      const T top = ltx.w0 * static_cast<T>(a[c]) + ltx.w1 * static_cast<T>(b[c]);
      const T bottom = ltx.w0 * static_cast<T>(c0[c]) + ltx.w1 * static_cast<T>(d[c]);
      term[c] = lty.w0 * top + lty.w1 * bottom;
    }
    return;
  }
  const int64_t Cy = p.channels_y, Cx = p.channels_x;
  const scalar_t *y0 = ty + lty.i0 * Cy, *y1 = ty + lty.i1 * Cy, *x0 = tx + ltx.i0 * Cx, *x1 = tx + ltx.i1 * Cx;
  if (p.combine == kSum) {
    for (int64_t c = 0; c < C; ++c)
      term[c] = (lty.w0 * static_cast<T>(y0[c]) + lty.w1 * static_cast<T>(y1[c])) +
                (ltx.w0 * static_cast<T>(x0[c]) + ltx.w1 * static_cast<T>(x1[c]));
    return;
  }
  for (int64_t c = 0; c < Cy; ++c) term[c] = lty.w0 * static_cast<T>(y0[c]) + lty.w1 * static_cast<T>(y1[c]);
  for (int64_t c = 0; c < Cx; ++c) term[Cy + c] = ltx.w0 * static_cast<T>(x0[c]) + ltx.w1 * static_cast<T>(x1[c]);
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
    // Parallel over sequence positions: each token's term is looked up once and added to all B rows.
    at::parallel_for(0, S, std::max<int64_t>(1, 8192 / std::max<int64_t>(C * p.batch, 1)),
                     [&](int64_t begin, int64_t end) {
      std::vector<T> term(C);
      for (int64_t s = begin; s < end; ++s) {
        const T py = pos[2 * s], px = pos[2 * s + 1];
        const bool prefix = py < T(0) || px < T(0);
        if (!prefix) position_term<scalar_t, T>(term.data(), ty, tx, lerp_taps<T>(py, p.len_y),
                                                lerp_taps<T>(px, p.len_x), p);
        for (int64_t b = 0; b < p.batch; ++b) {
          const scalar_t* __restrict__ xr = xp + b * p.x_batch_stride + s * p.x_token_stride;
          scalar_t* __restrict__ o = op + (b * S + s) * C;
          if (prefix) {
            std::copy(xr, xr + C, o);
          } else {
            for (int64_t c = 0; c < C; ++c) o[c] = static_cast<scalar_t>(static_cast<T>(xr[c]) + term[c]);
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
    at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
      std::vector<T> acc(C);
      for (int64_t r = begin; r < end; ++r) {
        std::fill(acc.begin(), acc.end(), T(0));
        for (int64_t e = off[r]; e < off[r + 1]; ++e)
          for (int64_t b = 0; b < B; ++b) {
            const scalar_t* gr = g + b * bs + tok[e] * ts + channel_offset;
            for (int64_t c = 0; c < C; ++c) acc[c] += w[e] * static_cast<T>(gr[c]);
          }
        for (int64_t c = 0; c < C; ++c) o[r * C + c] = static_cast<scalar_t>(acc[c]);
      }
    });
  });
}

}  // namespace posext
