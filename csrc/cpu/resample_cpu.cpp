// CPU resampling: tap tables per axis from resample.h, then two separable passes over token rows with the
// channels innermost (vectorisable): x into an opmath buffer [B, H_src, W_dst, C], then y into the output.
// Forward uses W, backward the transposed W^T gathered per input index: same code, deterministic.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "ops.h"

namespace posext {
namespace {

// Sparse rows of one axis matrix: row r uses entries [offset[r], offset[r+1]) of (idx, w), in summation order.
template <typename T>
struct TapRows {
  std::vector<int64_t> offset{0}, idx;
  std::vector<T> w;
  int64_t rows() const { return static_cast<int64_t>(offset.size()) - 1; }
};

template <typename T>
TapRows<T> forward_rows(const ResampleAxis& a, const ResampleParams& p) {
  TapRows<T> t;
  std::vector<int64_t> idx(a.max_taps);
  std::vector<T> w(a.max_taps);
  for (int64_t o = 0; o < a.out_size; ++o) {
    const int n = axis_taps<T>(a, p.mode, p.antialias, p.align_corners, o, idx.data(), w.data());
    t.idx.insert(t.idx.end(), idx.begin(), idx.begin() + n);
    t.w.insert(t.w.end(), w.begin(), w.begin() + n);
    t.offset.push_back(static_cast<int64_t>(t.idx.size()));
  }
  return t;
}

template <typename T>
TapRows<T> backward_rows(const ResampleAxis& a, const ResampleParams& p) {
  TapRows<T> t;
  for (int64_t i = 0; i < a.in_size; ++i) {
    int64_t lo, hi;
    outputs_reaching<T>(a, p.mode, p.antialias, p.align_corners, i, lo, hi);
    for (int64_t o = lo; o <= hi; ++o) {
      const T w = transposed_weight<T>(a, p.mode, p.antialias, p.align_corners, o, i);
      if (w != T(0)) {
        t.idx.push_back(o);
        t.w.push_back(w);
      }
    }
    t.offset.push_back(static_cast<int64_t>(t.idx.size()));
  }
  return t;
}

struct TokenGrid {  // a [B, P + h*w, C] token tensor with unit channel stride
  int64_t batch_stride, token_stride, h, w;
};

template <typename scalar_t, typename T>
void separable(const scalar_t* src, const TokenGrid& s, scalar_t* dst, const TokenGrid& d, const TapRows<T>& ty,
               const TapRows<T>& tx, const ResampleParams& p) {
  const int64_t B = p.batch, C = p.channels, P = p.num_prefix_tokens;
  at::parallel_for(0, B * P, 64, [&](int64_t begin, int64_t end) {  // prefix rows: bit-identical copies
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / P, t = r - b * P;
      const scalar_t* from = src + b * s.batch_stride + t * s.token_stride;
      std::copy(from, from + C, dst + b * d.batch_stride + t * d.token_stride);
    }
  });
  // Pass x: buf[b, y, ox, :] = sum_e tx.w[e] * src[b, y, tx.idx[e], :]
  std::vector<T> buf(static_cast<size_t>(B * s.h * d.w * C));
  const int64_t grain_x = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, d.w * C));
  at::parallel_for(0, B * s.h, grain_x, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / s.h, y = r - b * s.h;
      const scalar_t* row = src + b * s.batch_stride + (P + y * s.w) * s.token_stride;
      for (int64_t ox = 0; ox < d.w; ++ox) {
        T* acc = buf.data() + (r * d.w + ox) * C;
        for (int64_t e = tx.offset[ox]; e < tx.offset[ox + 1]; ++e) {
          const scalar_t* in = row + tx.idx[e] * s.token_stride;
          const T w = tx.w[e];
          for (int64_t c = 0; c < C; ++c) acc[c] += w * static_cast<T>(in[c]);
        }
      }
    }
  });
  // Pass y: dst[b, oy, ox, :] = sum_e ty.w[e] * buf[b, ty.idx[e], ox, :]
  const int64_t grain_y = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, d.w * C));
  at::parallel_for(0, B * d.h, grain_y, [&](int64_t begin, int64_t end) {
    std::vector<T> acc(C);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / d.h, oy = r - b * d.h;
      for (int64_t ox = 0; ox < d.w; ++ox) {
        std::fill(acc.begin(), acc.end(), T(0));
        for (int64_t e = ty.offset[oy]; e < ty.offset[oy + 1]; ++e) {
          const T* in = buf.data() + ((b * s.h + ty.idx[e]) * d.w + ox) * C;
          const T w = ty.w[e];
          for (int64_t c = 0; c < C; ++c) acc[c] += w * in[c];
        }
        scalar_t* out = dst + b * d.batch_stride + (P + oy * d.w + ox) * d.token_stride;
        for (int64_t c = 0; c < C; ++c) out[c] = static_cast<scalar_t>(acc[c]);
      }
    }
  });
}

}  // namespace

void resample_forward_cpu(const at::Tensor& input, at::Tensor& out, const ResampleParams& p) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "posext_resample_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    const TokenGrid s{p.in_batch_stride, p.in_token_stride, p.y.in_size, p.x.in_size};
    const TokenGrid d{p.out_batch_stride, p.out_token_stride, p.y.out_size, p.x.out_size};
    separable<scalar_t, T>(input.const_data_ptr<scalar_t>(), s, out.data_ptr<scalar_t>(), d, forward_rows<T>(p.y, p),
                           forward_rows<T>(p.x, p), p);
  });
}

void resample_backward_cpu(const at::Tensor& grad_out, at::Tensor& grad_in, const ResampleParams& p) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_out.scalar_type(), "posext_resample_bwd_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    const TokenGrid s{p.in_batch_stride, p.in_token_stride, p.y.out_size, p.x.out_size};
    const TokenGrid d{p.out_batch_stride, p.out_token_stride, p.y.in_size, p.x.in_size};
    separable<scalar_t, T>(grad_out.const_data_ptr<scalar_t>(), s, grad_in.data_ptr<scalar_t>(), d,
                           backward_rows<T>(p.y, p), backward_rows<T>(p.x, p), p);
  });
}

}  // namespace posext
