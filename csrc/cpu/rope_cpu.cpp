// CPU RoPE (1 to 3 position axes). Work item: a block of kBlockTokens grid tokens. The block's angles for every frequency head
// ([Hf, block, D/2], at most a few hundred KB: computed on the fly, never a whole cos/sin table) go through
// ATen's vectorised sin/cos (SLEEF, <= 1 ulp; scalar libm sin/cos cost 20x more and dominated mixed RoPE), then
// every batch entry and head of q and k is rotated from that buffer in opmath T. Rows with unit channel stride
// take loops the compiler vectorises (also built for AVX2 + FMA); other strides take the same formula strided.
// With positions per batch entry a work item is one entry's block. Prefix tokens are copied. The frequency gradient sums per block (blocking independent of the thread count),
// then over blocks in order: deterministic, no atomics; per token in T, across tokens in double.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "cpu_isa.h"
#include "rope_op.h"

namespace posext {
namespace {

constexpr int64_t kBlockTokens = 16;

// cos and sin of the angles of grid tokens [g0, g0 + count), laid out [Hf][count][D/2].
template <typename T>
struct BlockTrig {
  std::vector<T> cos_, sin_;
  int64_t count = 0, half = 0;

  // Batch entry b's positions (any b when the batch shares them).
  void compute(const T* pos, const T* freqs, const RopeParams& p, int64_t b, int64_t g0, int64_t count_) {
    count = count_;
    half = p.rotary_pairs;
    const int64_t n = p.freq_heads * count * half;
    cos_.resize(n);
    sin_.resize(n);
    for (int64_t hf = 0; hf < p.freq_heads; ++hf)
      for (int64_t i = 0; i < count; ++i) {
        const T* t = rope_token_positions(pos, p, b, g0 + i);
        for (int64_t j = 0; j < half; ++j) cos_[(hf * count + i) * half + j] = rope_angle<T>(t, freqs, p, hf, j);
      }
    const auto options = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
    at::Tensor angle = at::from_blob(cos_.data(), {n}, options);
    at::Tensor sine = at::from_blob(sin_.data(), {n}, options);
    at::sin_out(sine, angle);  // inside a parallel region ATen runs these inline on this thread
    at::cos_out(angle, angle);
  }
  const T* cos_row(int64_t hf, int64_t i) const { return cos_.data() + (hf * count + i) * half; }
  const T* sin_row(int64_t hf, int64_t i) const { return sin_.data() + (hf * count + i) * half; }
};

template <int Pairs>
inline void pair_channels(int64_t half, int64_t j, int64_t& c0, int64_t& c1) {
  rope_pair_channels(Pairs, half, j, c0, c1);
}

// One head row: dst = rotation of src's first 2 * half channels, its channels [2 * half, D) copied. `Unit`: both rows
// have channel stride 1 (sd, dd ignored), which lets the compiler vectorise; src may equal dst (in place).
template <typename scalar_t, typename T, int Pairs, bool Unit>
POSEXT_CPU_CLONES void rotate_row(const scalar_t* src, int64_t sd, scalar_t* dst, int64_t dd, const T* c, const T* s,
                                  int64_t half, int64_t D) {
  if (Unit) sd = dd = 1;
  for (int64_t j = 0; j < half; ++j) {
    int64_t c0, c1;
    pair_channels<Pairs>(half, j, c0, c1);
    const T a = static_cast<T>(src[c0 * sd]), b = static_cast<T>(src[c1 * sd]);
    T a2, b2;
    rope_rotate<T>(a, b, c[j], s[j], a2, b2);
    dst[c0 * dd] = static_cast<scalar_t>(a2);
    dst[c1 * dd] = static_cast<scalar_t>(b2);
  }
  if (src != dst || sd != dd)
    for (int64_t ch = 2 * half; ch < D; ++ch) dst[ch * dd] = src[ch * sd];
}

// acc[j] += dL/dangle of pair j for one head row of input x and output gradient g.
template <typename scalar_t, typename T, int Pairs, bool Unit>
POSEXT_CPU_CLONES void angle_grad_row(const scalar_t* x, int64_t xd, const scalar_t* g, int64_t gd, const T* c,
                                      const T* s, T* acc, int64_t half) {
  if (Unit) xd = gd = 1;
  for (int64_t j = 0; j < half; ++j) {
    int64_t c0, c1;
    pair_channels<Pairs>(half, j, c0, c1);
    acc[j] += rope_angle_grad<T>(static_cast<T>(x[c0 * xd]), static_cast<T>(x[c1 * xd]), static_cast<T>(g[c0 * gd]),
                                 static_cast<T>(g[c1 * gd]), c[j], s[j]);
  }
}

template <typename scalar_t>
void copy_row(const scalar_t* src, int64_t src_d, scalar_t* dst, int64_t dst_d, int64_t D) {
  if (src == dst && src_d == dst_d) return;
  for (int64_t c = 0; c < D; ++c) dst[c * dst_d] = src[c * src_d];
}

// Element offset of row (b, h, n) for [B, H, N, D] strides st.
inline int64_t row_offset(const int64_t* st, int64_t b, int64_t h, int64_t n) { return b * st[0] + h * st[1] + n * st[2]; }

// Calls fn(t, b, h, i) for q (t = 0) and k (t = 1), batch entries b in [b0, b1), every head h (of that tensor) and
// block token i, in the order rows lie in memory (strides st[t]): tokens inner for [B, H, N, D] memory, heads inner
// for [B, N, H, D] / qkv.
template <typename Fn>
void for_rows_in_memory_order(const int64_t* const* st, const RopeParams& p, int64_t b0, int64_t b1, int64_t count,
                              Fn&& fn) {
  for (int t = 0; t < 2; ++t) {
    const int64_t heads = t == 0 ? p.heads : p.k_heads;
    for (int64_t b = b0; b < b1; ++b) {
      if (st[t][2] <= st[t][1]) {
        for (int64_t h = 0; h < heads; ++h)
          for (int64_t i = 0; i < count; ++i) fn(t, b, h, i);
      } else {
        for (int64_t i = 0; i < count; ++i)
          for (int64_t h = 0; h < heads; ++h) fn(t, b, h, i);
      }
    }
  }
}

// The batch entries of work-item row `entry`: all of them when the batch shares its positions, else that one.
struct BatchRange {
  int64_t begin, end;
};
inline BatchRange batch_range(const RopeParams& p, int64_t entry) {
  return p.pos_batch > 1 ? BatchRange{entry, entry + 1} : BatchRange{0, p.batch};
}

struct ForwardRows {
template <typename scalar_t, int Pairs, bool Unit>
static void run(const at::Tensor& q, const at::Tensor& k, const at::Tensor& positions, const at::Tensor& freqs,
                       at::Tensor& out_q, at::Tensor& out_k, const RopeParams& p) {
  using T = at::opmath_type<scalar_t>;
  const scalar_t* src[2] = {q.const_data_ptr<scalar_t>(), k.const_data_ptr<scalar_t>()};
  scalar_t* dst[2] = {out_q.data_ptr<scalar_t>(), out_k.data_ptr<scalar_t>()};
  const int64_t* ss[2] = {p.q_stride, p.k_stride};
  const int64_t* ds[2] = {p.oq_stride, p.ok_stride};
  const T* pos = positions.const_data_ptr<T>();
  const T* f = freqs.const_data_ptr<T>();
  const int64_t half = p.rotary_pairs, P = p.num_prefix_tokens, grid = p.tokens - P;

  at::parallel_for(0, P, 1, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n)
      for (int t = 0; t < 2; ++t)
        for (int64_t h = 0; h < (t == 0 ? p.heads : p.k_heads); ++h)
          for (int64_t b = 0; b < p.batch; ++b)
            copy_row(src[t] + row_offset(ss[t], b, h, n), ss[t][3], dst[t] + row_offset(ds[t], b, h, n), ds[t][3],
                     p.head_dim);
  });
  const int64_t blocks = (grid + kBlockTokens - 1) / kBlockTokens;
  at::parallel_for(0, p.pos_batch * blocks, 1, [&](int64_t begin, int64_t end) {
    BlockTrig<T> trig;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t blk = item % blocks, g0 = blk * kBlockTokens, count = std::min(kBlockTokens, grid - g0);
      const BatchRange entries = batch_range(p, item / blocks);
      trig.compute(pos, f, p, entries.begin, g0, count);
      const auto rotate = [&](int t, int64_t b, int64_t h, int64_t i) {
        const int64_t n = P + g0 + i, hf = p.freq_heads > 1 ? h : 0;
        rotate_row<scalar_t, T, Pairs, Unit>(src[t] + row_offset(ss[t], b, h, n), ss[t][3],
                                             dst[t] + row_offset(ds[t], b, h, n), ds[t][3], trig.cos_row(hf, i),
                                             trig.sin_row(hf, i), half, p.head_dim);
      };
      for_rows_in_memory_order(ss, p, entries.begin, entries.end, count, rotate);
    }
  });
}
};

struct FreqsBackwardRows {
template <typename scalar_t, int Pairs, bool Unit>
static void run(const at::Tensor& grad_q, const at::Tensor& grad_k, const at::Tensor& q,
                              const at::Tensor& k, const at::Tensor& positions, const at::Tensor& freqs,
                              at::Tensor& grad_freqs, const RopeParams& p) {
  using T = at::opmath_type<scalar_t>;
  const scalar_t* x[2] = {q.const_data_ptr<scalar_t>(), k.const_data_ptr<scalar_t>()};
  const scalar_t* g[2] = {grad_q.const_data_ptr<scalar_t>(), grad_k.const_data_ptr<scalar_t>()};
  const int64_t* xs[2] = {p.q_stride, p.k_stride};
  const int64_t* gs[2] = {p.oq_stride, p.ok_stride};
  const T* pos = positions.const_data_ptr<T>();
  const T* f = freqs.const_data_ptr<T>();
  const int64_t half = p.rotary_pairs, Hf = p.freq_heads, P = p.num_prefix_tokens, grid = p.tokens - P;
  const int64_t A = p.axes, blocks = (grid + kBlockTokens - 1) / kBlockTokens, per_block = A * Hf * half;
  const int64_t items = p.pos_batch * blocks;
  std::vector<double> partial(static_cast<size_t>(items * per_block), 0.0);  // [item, A, Hf, D/2]
  at::parallel_for(0, items, 1, [&](int64_t begin, int64_t end) {
    BlockTrig<T> trig;
    std::vector<T> dangle;  // dL/dangle [Hf][block token][D/2], summed over entries, q/k (and heads if Hf = 1) in T
    for (int64_t item = begin; item < end; ++item) {
      const int64_t blk = item % blocks, g0 = blk * kBlockTokens, count = std::min(kBlockTokens, grid - g0);
      const BatchRange entries = batch_range(p, item / blocks);
      trig.compute(pos, f, p, entries.begin, g0, count);
      dangle.assign(static_cast<size_t>(Hf * count * half), T(0));
      const auto add = [&](int t, int64_t b, int64_t h, int64_t i) {
        const int64_t n = P + g0 + i, hf = Hf > 1 ? h : 0;
        angle_grad_row<scalar_t, T, Pairs, Unit>(x[t] + row_offset(xs[t], b, h, n), xs[t][3],
                                                 g[t] + row_offset(gs[t], b, h, n), gs[t][3], trig.cos_row(hf, i),
                                                 trig.sin_row(hf, i), dangle.data() + (hf * count + i) * half, half);
      };
      for_rows_in_memory_order(xs, p, entries.begin, entries.end, count, add);
      double* acc = partial.data() + item * per_block;
      for (int64_t hf = 0; hf < Hf; ++hf)
        for (int64_t i = 0; i < count; ++i) {
          const T* d = dangle.data() + (hf * count + i) * half;
          const T* pt = rope_token_positions(pos, p, entries.begin, g0 + i);
          for (int64_t a = 0; a < A; ++a) {
            const double t = static_cast<double>(pt[a]);
            double* row = acc + rope_freq_index(p, a, hf, 0);
            for (int64_t j = 0; j < half; ++j) row[j] += static_cast<double>(d[j]) * t;
          }
        }
    }
  });
  T* out = grad_freqs.data_ptr<T>();
  for (int64_t e = 0; e < per_block; ++e) {
    double sum = 0.0;
    for (int64_t item = 0; item < items; ++item) sum += partial[item * per_block + e];
    out[e] = static_cast<T>(sum);
  }
}
};

// Runs Rows::run<scalar_t, Pairs, Unit>(args...) for the runtime pair layout and stride case.
template <typename Rows, typename scalar_t, typename... Args>
void dispatch_rows(const RopeParams& p, bool unit, Args&... args) {
  if (p.pairs == kRopeHalf) {
    unit ? Rows::template run<scalar_t, kRopeHalf, true>(args..., p)
         : Rows::template run<scalar_t, kRopeHalf, false>(args..., p);
  } else {
    unit ? Rows::template run<scalar_t, kRopeInterleaved, true>(args..., p)
         : Rows::template run<scalar_t, kRopeInterleaved, false>(args..., p);
  }
}

}  // namespace

void rope_2d_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& positions, const at::Tensor& freqs,
                 at::Tensor& out_q, at::Tensor& out_k, const RopeParams& p) {
  const bool unit = p.q_stride[3] == 1 && p.k_stride[3] == 1 && p.oq_stride[3] == 1 && p.ok_stride[3] == 1;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q.scalar_type(), "posext_rope_2d_cpu", [&] {
    dispatch_rows<ForwardRows, scalar_t>(p, unit, q, k, positions, freqs, out_q, out_k);
  });
}

void rope_2d_freqs_backward_cpu(const at::Tensor& grad_q, const at::Tensor& grad_k, const at::Tensor& q,
                                const at::Tensor& k, const at::Tensor& positions, const at::Tensor& freqs,
                                at::Tensor& grad_freqs, const RopeParams& p) {
  const bool unit = p.q_stride[3] == 1 && p.k_stride[3] == 1 && p.oq_stride[3] == 1 && p.ok_stride[3] == 1;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q.scalar_type(), "posext_rope_2d_bwd_cpu", [&] {
    dispatch_rows<FreqsBackwardRows, scalar_t>(p, unit, grad_q, grad_k, q, k, positions, freqs, grad_freqs);
  });
}

TORCH_LIBRARY_IMPL(posext, CPU, m) { RopeOps<rope_2d_cpu, rope_2d_freqs_backward_cpu>::register_kernels(m); }

}  // namespace posext
