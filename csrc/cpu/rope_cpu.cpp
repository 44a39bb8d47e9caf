// CPU 2D RoPE: one work item per token. Its D/2 angles (per frequency head) are computed once into a small
// buffer (cos, sin) and applied to every batch entry and head of q and k, in opmath T; prefix tokens are copied.
// The frequency gradient sums per fixed chunk of tokens (chunking independent of the thread count), then
// over chunks in order: deterministic, no atomics, double accumulation.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <vector>

#include "ops.h"

namespace posext {
namespace {

constexpr int64_t kChunkTokens = 16;

template <typename T>
void token_sincos(const T* pos, const T* freqs, const RopeParams& p, int64_t grid_token, int64_t hf, T* c, T* s) {
  for (int64_t j = 0; j < p.head_dim / 2; ++j)
    rope_sincos<T>(rope_angle<T>(pos, freqs, p, grid_token, hf, j), s[j], c[j]);
}

template <typename scalar_t, typename T>
void rotate_row(const scalar_t* src, int64_t src_d, scalar_t* dst, int64_t dst_d, const T* c, const T* s,
                const RopeParams& p) {
  for (int64_t j = 0; j < p.head_dim / 2; ++j) {
    int64_t c0, c1;
    rope_pair_channels(p.pairs, p.head_dim, j, c0, c1);
    const T a = static_cast<T>(src[c0 * src_d]), b = static_cast<T>(src[c1 * src_d]);
    T a2, b2;
    rope_rotate<T>(a, b, c[j], s[j], a2, b2);
    dst[c0 * dst_d] = static_cast<scalar_t>(a2);
    dst[c1 * dst_d] = static_cast<scalar_t>(b2);
  }
}

template <typename scalar_t>
void copy_row(const scalar_t* src, int64_t src_d, scalar_t* dst, int64_t dst_d, int64_t D) {
  if (src == dst && src_d == dst_d) return;
  for (int64_t c = 0; c < D; ++c) dst[c * dst_d] = src[c * src_d];
}

}  // namespace

void rope_2d_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& positions, const at::Tensor& freqs,
                 at::Tensor& out_q, at::Tensor& out_k, const RopeParams& p) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q.scalar_type(), "posext_rope_2d_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    const scalar_t* src[2] = {q.const_data_ptr<scalar_t>(), k.const_data_ptr<scalar_t>()};
    scalar_t* dst[2] = {out_q.data_ptr<scalar_t>(), out_k.data_ptr<scalar_t>()};
    const int64_t* ss[2] = {p.q_stride, p.k_stride};
    const int64_t* ds[2] = {p.oq_stride, p.ok_stride};
    const T* pos = positions.const_data_ptr<T>();
    const T* f = freqs.const_data_ptr<T>();
    const int64_t half = p.head_dim / 2;
    at::parallel_for(0, p.tokens, 4, [&](int64_t begin, int64_t end) {
      std::vector<T> c(half), s(half);
      for (int64_t n = begin; n < end; ++n) {
        const bool prefix = n < p.num_prefix_tokens;
        const int64_t g = n - p.num_prefix_tokens;
        for (int64_t h = 0; h < p.heads; ++h) {
          if (!prefix && (h == 0 || p.freq_heads > 1))
            token_sincos<T>(pos, f, p, g, p.freq_heads > 1 ? h : 0, c.data(), s.data());
          for (int64_t b = 0; b < p.batch; ++b) {
            for (int t = 0; t < 2; ++t) {
              const scalar_t* from = src[t] + b * ss[t][0] + h * ss[t][1] + n * ss[t][2];
              scalar_t* to = dst[t] + b * ds[t][0] + h * ds[t][1] + n * ds[t][2];
              if (prefix) {
                copy_row(from, ss[t][3], to, ds[t][3], p.head_dim);
              } else {
                rotate_row<scalar_t, T>(from, ss[t][3], to, ds[t][3], c.data(), s.data(), p);
              }
            }
          }
        }
      }
    });
  });
}

void rope_2d_freqs_backward_cpu(const at::Tensor& grad_q, const at::Tensor& grad_k, const at::Tensor& q,
                                const at::Tensor& k, const at::Tensor& positions, const at::Tensor& freqs,
                                at::Tensor& grad_freqs, const RopeParams& p) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q.scalar_type(), "posext_rope_2d_bwd_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    const scalar_t* x[2] = {q.const_data_ptr<scalar_t>(), k.const_data_ptr<scalar_t>()};
    const scalar_t* g[2] = {grad_q.const_data_ptr<scalar_t>(), grad_k.const_data_ptr<scalar_t>()};
    const int64_t* xs[2] = {p.q_stride, p.k_stride};
    const int64_t* gs[2] = {p.oq_stride, p.ok_stride};
    const T* pos = positions.const_data_ptr<T>();
    const T* f = freqs.const_data_ptr<T>();
    const int64_t half = p.head_dim / 2, Hf = p.freq_heads, grid = p.tokens - p.num_prefix_tokens;
    const int64_t chunks = (grid + kChunkTokens - 1) / kChunkTokens, per_chunk = 2 * Hf * half;
    std::vector<double> partial(static_cast<size_t>(chunks * per_chunk), 0.0);  // [chunk, 2 (x, y), Hf, D/2]
    at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
      std::vector<T> c(half), s(half);
      for (int64_t chunk = begin; chunk < end; ++chunk) {
        double* acc = partial.data() + chunk * per_chunk;
        const int64_t g_end = std::min(grid, (chunk + 1) * kChunkTokens);
        for (int64_t gi = chunk * kChunkTokens; gi < g_end; ++gi) {
          const int64_t n = gi + p.num_prefix_tokens;
          const double tx = static_cast<double>(pos[2 * gi]), ty = static_cast<double>(pos[2 * gi + 1]);
          for (int64_t h = 0; h < p.heads; ++h) {
            const int64_t hf = Hf > 1 ? h : 0;
            if (h == 0 || Hf > 1) token_sincos<T>(pos, f, p, gi, hf, c.data(), s.data());
            for (int64_t b = 0; b < p.batch; ++b) {
              for (int t = 0; t < 2; ++t) {
                const scalar_t* xr = x[t] + b * xs[t][0] + h * xs[t][1] + n * xs[t][2];
                const scalar_t* gr = g[t] + b * gs[t][0] + h * gs[t][1] + n * gs[t][2];
                for (int64_t j = 0; j < half; ++j) {
                  int64_t c0, c1;
                  rope_pair_channels(p.pairs, p.head_dim, j, c0, c1);
                  const double d = static_cast<double>(rope_angle_grad<T>(
                      static_cast<T>(xr[c0 * xs[t][3]]), static_cast<T>(xr[c1 * xs[t][3]]),
                      static_cast<T>(gr[c0 * gs[t][3]]), static_cast<T>(gr[c1 * gs[t][3]]), c[j], s[j]));
                  acc[hf * half + j] += d * tx;
                  acc[(Hf + hf) * half + j] += d * ty;
                }
              }
            }
          }
        }
      }
    });
    T* out = grad_freqs.data_ptr<T>();
    for (int64_t e = 0; e < per_chunk; ++e) {
      double sum = 0.0;
      for (int64_t chunk = 0; chunk < chunks; ++chunk) sum += partial[chunk * per_chunk + e];
      out[e] = static_cast<T>(sum);
    }
  });
}

}  // namespace posext
