// CPU resampling: tap tables per axis from resample.h, then two separable passes with the channels innermost
// (vectorisable): x into an opmath buffer [H_src, tile of W_dst, C] that stays in cache, then y into the output.
// Forward uses W, backward the transposed W^T gathered per input index: same code, deterministic.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "cpu_isa.h"
#include "resample_op.h"

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

// The float32 inner loop is the hot one (POSEXT_CPU_CLONES: also built for AVX2 + FMA).

// acc = sum_e w[e] * rows[e], summed sequentially in tap order (as torch does), four taps per sweep over C
// so that acc is loaded and stored once per four taps.
POSEXT_CPU_CLONES void taps_f32(float* __restrict__ acc, const float* const* rows, const float* w, int64_t n,
                                int64_t C) {
  int64_t e = 0;
  for (; e + 4 <= n; e += 4) {
    const float *r0 = rows[e], *r1 = rows[e + 1], *r2 = rows[e + 2], *r3 = rows[e + 3];
    const float w0 = w[e], w1 = w[e + 1], w2 = w[e + 2], w3 = w[e + 3];
    if (e == 0) {
      for (int64_t c = 0; c < C; ++c) acc[c] = ((w0 * r0[c] + w1 * r1[c]) + w2 * r2[c]) + w3 * r3[c];
    } else {
      for (int64_t c = 0; c < C; ++c) acc[c] = (((acc[c] + w0 * r0[c]) + w1 * r1[c]) + w2 * r2[c]) + w3 * r3[c];
    }
  }
  for (; e < n; ++e) {
    const float* r = rows[e];
    const float we = w[e];
    if (e == 0) {
      for (int64_t c = 0; c < C; ++c) acc[c] = we * r[c];
    } else {
      for (int64_t c = 0; c < C; ++c) acc[c] += we * r[c];
    }
  }
}

// acc = sum over the row's taps e of w[e] * row_of(idx[e]), sequentially in tap order; zeros without taps.
// `scratch` holds max-taps row pointers.
template <typename src_t, typename T, typename RowOf>
inline void weighted_sum(T* __restrict__ acc, const TapRows<T>& taps, int64_t r, RowOf row_of, int64_t C,
                         std::vector<const src_t*>& scratch) {
  const int64_t begin = taps.offset[r], n = taps.offset[r + 1] - begin;
  if (n == 0) {
    std::fill(acc, acc + C, T(0));
    return;
  }
  if constexpr (std::is_same<src_t, float>::value && std::is_same<T, float>::value) {
    scratch.resize(std::max<size_t>(scratch.size(), n));
    for (int64_t e = 0; e < n; ++e) scratch[e] = row_of(taps.idx[begin + e]);
    taps_f32(acc, scratch.data(), taps.w.data() + begin, n, C);
  } else {
    for (int64_t e = 0; e < n; ++e) {
      const src_t* src = row_of(taps.idx[begin + e]);
      const T w = taps.w[begin + e];
      for (int64_t c = 0; c < C; ++c) acc[c] = e == 0 ? w * static_cast<T>(src[c]) : acc[c] + w * static_cast<T>(src[c]);
    }
  }
}

// Fused add: out = x + v, v rounded to scalar_t first (the table an unfused caller would have added), in T.
template <typename scalar_t, typename T, typename V>
POSEXT_CPU_CLONES void add_row(scalar_t* __restrict__ out, const scalar_t* __restrict__ x, const V* __restrict__ v,
                               int64_t C) {
  for (int64_t c = 0; c < C; ++c)
    out[c] = static_cast<scalar_t>(static_cast<T>(x[c]) + static_cast<T>(static_cast<scalar_t>(v[c])));
}

// Writes result row `token` of table entry b: into dst, or (fused add) x + row into every batch entry it feeds.
template <typename scalar_t, typename T, typename V>
void store_row(const V* row, int64_t b, int64_t token, scalar_t* dst, const TokenGrid& d, const scalar_t* add,
               const ResampleParams& p) {
  const int64_t C = p.channels;
  if (add == nullptr) {
    scalar_t* out = dst + b * d.batch_stride + token * d.token_stride;
    for (int64_t c = 0; c < C; ++c) out[c] = static_cast<scalar_t>(row[c]);
    return;
  }
  int64_t first, last;
  add_targets(p, b, first, last);
  for (int64_t xb = first; xb < last; ++xb)
    add_row<scalar_t, T, V>(dst + xb * d.batch_stride + token * d.token_stride,
                            add + xb * p.add_batch_stride + token * p.add_token_stride, row, C);
}

template <typename scalar_t, typename T>
void separable(const scalar_t* src, const TokenGrid& s, scalar_t* dst, const TokenGrid& d, const TapRows<T>& ty,
               const TapRows<T>& tx, const ResampleParams& p, const scalar_t* add = nullptr) {
  const int64_t B = p.batch, C = p.channels, P = p.num_prefix_tokens;
  at::parallel_for(0, B * P, 64, [&](int64_t begin, int64_t end) {  // prefix rows: bit-identical copies (or adds)
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / P, t = r - b * P;
      store_row<scalar_t, T, scalar_t>(src + b * s.batch_stride + t * s.token_stride, b, t, dst, d, add, p);
    }
  });
  // Work item: one batch entry and a tile of output columns, sized so that its pass-x result for all source
  // rows stays in L2 while pass y reads it (each source row is read by several output rows).
  constexpr int64_t kTileBytes = 256 * 1024;
  const int64_t tile = std::min<int64_t>(d.w, std::max<int64_t>(1, kTileBytes / std::max<int64_t>(1, s.h * C * sizeof(T))));
  const int64_t tiles = (d.w + tile - 1) / tile;
  at::parallel_for(0, B * tiles, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> buf(static_cast<size_t>(s.h * tile * C));
    std::vector<T> acc(C);
    std::vector<const scalar_t*> src_rows;
    std::vector<const T*> buf_rows;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / tiles, ox0 = (item - b * tiles) * tile, nx = std::min(tile, d.w - ox0);
      // Pass x: buf[y, j, :] = sum_e tx.w[e] * src[b, y, tx.idx[e], :] for output column ox0 + j
      for (int64_t y = 0; y < s.h; ++y) {
        const scalar_t* row = src + b * s.batch_stride + (P + y * s.w) * s.token_stride;
        for (int64_t j = 0; j < nx; ++j)
          weighted_sum<scalar_t>(buf.data() + (y * tile + j) * C, tx, ox0 + j,
                                 [&](int64_t x) { return row + x * s.token_stride; }, C, src_rows);
      }
      // Pass y: dst[b, oy, ox0 + j, :] = sum_e ty.w[e] * buf[ty.idx[e], j, :]
      for (int64_t oy = 0; oy < d.h; ++oy) {
        for (int64_t j = 0; j < nx; ++j) {
          const int64_t token = P + oy * d.w + ox0 + j;
          const auto column = [&](int64_t y) { return buf.data() + (y * tile + j) * C; };
          if (std::is_same<scalar_t, T>::value && add == nullptr) {  // straight into the output row
            weighted_sum<T>(reinterpret_cast<T*>(dst + b * d.batch_stride + token * d.token_stride), ty, oy, column,
                            C, buf_rows);
          } else {
            weighted_sum<T>(acc.data(), ty, oy, column, C, buf_rows);
            store_row<scalar_t, T, T>(acc.data(), b, token, dst, d, add, p);
          }
        }
      }
    }
  });
}

}  // namespace

void resample_forward_cpu(const at::Tensor& input, at::Tensor& out, const ResampleParams& p,
                          const at::Tensor& addend) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "posext_resample_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    const TokenGrid s{p.in_batch_stride, p.in_token_stride, p.y.in_size, p.x.in_size};
    const TokenGrid d{p.out_batch_stride, p.out_token_stride, p.y.out_size, p.x.out_size};
    separable<scalar_t, T>(input.const_data_ptr<scalar_t>(), s, out.data_ptr<scalar_t>(), d, forward_rows<T>(p.y, p),
                           forward_rows<T>(p.x, p), p, addend.defined() ? addend.const_data_ptr<scalar_t>() : nullptr);
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

TORCH_LIBRARY_IMPL(posext, CPU, m) { ResampleOps<resample_forward_cpu, resample_backward_cpu>::register_kernels(m); }

}  // namespace posext
