// CUDA RoPE (1 to 3 position axes), one launch for q and k. A thread owns one rotated pair (token n, head h, pair j): threads run
// along the pairs, i.e. along the contiguous head_dim, so loads and stores are coalesced. It computes its
// angle once (rope.h, opmath T; once per entry for per-entry positions) and rotates that pair of q and k for a few
// batch entries (grid.y strides the batch). The frequency gradient: one block per frequency (hf, j) sums its (b, h, n) terms in a fixed order
// per thread, then a fixed shared-memory tree: deterministic, no atomics, double accumulation.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "rope_op.h"

namespace posext {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kBatchPerThread = 4;


// grid.x * blockDim.x >= N * H * D/2 threads, index (n * H + h) * D/2 + j; grid.y strides the batch. Slot j < R/2
// is rotated pair j; a slot past them copies the two pass-through channels R + 2 (j - R/2) and the one after. k
// rows exist for h < k_heads only.
template <typename scalar_t, typename T>
__global__ void rope_2d_kernel(const scalar_t* q, const scalar_t* k,  // may alias out_q, out_k (in place)
                               scalar_t* out_q, scalar_t* out_k, const T* __restrict__ pos,
                               const T* __restrict__ freqs, const RopeParams p) {
  const int64_t slots = p.head_dim / 2, R2 = p.rotary_pairs;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= p.tokens * p.heads * slots) return;
  const int64_t j = idx % slots, nh = idx / slots, h = nh % p.heads, n = nh / p.heads;
  int64_t c0, c1;
  const bool rotated = j < R2;
  if (rotated) {
    rope_pair_channels(p.pairs, R2, j, c0, c1);
  } else {
    c0 = 2 * j;  // = R + 2 (j - R/2)
    c1 = c0 + 1;
  }
  const bool prefix = n < p.num_prefix_tokens || !rotated;  // copied as they are
  const int64_t g = n - p.num_prefix_tokens, hf = p.freq_heads > 1 ? h : 0;
  T c = T(1), s = T(0);
  const auto turn = [&](int64_t b) {
    rope_sincos<T>(rope_angle<T>(rope_token_positions(pos, p, b, g), freqs, p, hf, j), s, c);
  };
  if (!prefix && p.pos_batch == 1) turn(0);  // one angle for the whole batch
  for (int64_t b = blockIdx.y; b < p.batch; b += gridDim.y) {
    if (!prefix && p.pos_batch > 1) turn(b);
    const scalar_t* src[2] = {q + b * p.q_stride[0] + h * p.q_stride[1] + n * p.q_stride[2],
                              k + b * p.k_stride[0] + h * p.k_stride[1] + n * p.k_stride[2]};
    scalar_t* dst[2] = {out_q + b * p.oq_stride[0] + h * p.oq_stride[1] + n * p.oq_stride[2],
                        out_k + b * p.ok_stride[0] + h * p.ok_stride[1] + n * p.ok_stride[2]};
    const int64_t sd[2] = {p.q_stride[3], p.k_stride[3]}, dd[2] = {p.oq_stride[3], p.ok_stride[3]};
    const int tensors = h < p.k_heads ? 2 : 1;
    for (int t = 0; t < tensors; ++t) {
      const scalar_t a = src[t][c0 * sd[t]], bb = src[t][c1 * sd[t]];
      if (prefix) {
        dst[t][c0 * dd[t]] = a;
        dst[t][c1 * dd[t]] = bb;
      } else {
        T a2, b2;
        rope_rotate<T>(static_cast<T>(a), static_cast<T>(bb), c, s, a2, b2);
        dst[t][c0 * dd[t]] = static_cast<scalar_t>(a2);
        dst[t][c1 * dd[t]] = static_cast<scalar_t>(b2);
      }
    }
  }
}

// grid.x = Hf * D/2 frequencies; grad_freqs [A, Hf, D/2]. Items (b, h, g) of this frequency's heads.
template <typename scalar_t, typename T>
__global__ void rope_2d_freqs_backward_kernel(const scalar_t* __restrict__ grad_q, const scalar_t* __restrict__ grad_k,
                                              const scalar_t* __restrict__ q, const scalar_t* __restrict__ k,
                                              const T* __restrict__ pos, const T* __restrict__ freqs,
                                              T* __restrict__ grad_freqs, const RopeParams p) {
  __shared__ double red[kRopeMaxAxes][kThreads];
  const int64_t half = p.rotary_pairs, Hf = p.freq_heads;
  const int64_t hf = blockIdx.x / half, j = blockIdx.x % half;
  const int64_t grid = p.tokens - p.num_prefix_tokens;
  const int64_t heads_here = Hf > 1 ? 1 : p.heads;  // heads this frequency drives
  const int64_t items = p.batch * heads_here * grid;
  int64_t c0, c1;
  rope_pair_channels(p.pairs, half, j, c0, c1);
  double acc[kRopeMaxAxes] = {0.0, 0.0, 0.0};
  for (int64_t it = threadIdx.x; it < items; it += blockDim.x) {
    const int64_t g = it % grid, bh = it / grid, hh = bh % heads_here, b = bh / heads_here;
    const int64_t h = Hf > 1 ? hf : hh, n = g + p.num_prefix_tokens;
    const T* t_pos = rope_token_positions(pos, p, b, g);
    T c, s;
    rope_sincos<T>(rope_angle<T>(t_pos, freqs, p, hf, j), s, c);
    const scalar_t* xr[2] = {q + b * p.q_stride[0] + h * p.q_stride[1] + n * p.q_stride[2],
                             k + b * p.k_stride[0] + h * p.k_stride[1] + n * p.k_stride[2]};
    const scalar_t* gr[2] = {grad_q + b * p.oq_stride[0] + h * p.oq_stride[1] + n * p.oq_stride[2],
                             grad_k + b * p.ok_stride[0] + h * p.ok_stride[1] + n * p.ok_stride[2]};
    const int64_t xd[2] = {p.q_stride[3], p.k_stride[3]}, gd[2] = {p.oq_stride[3], p.ok_stride[3]};
    double d = 0.0;
    const int tensors = h < p.k_heads ? 2 : 1;
    for (int t = 0; t < tensors; ++t)
      d += static_cast<double>(rope_angle_grad<T>(static_cast<T>(xr[t][c0 * xd[t]]), static_cast<T>(xr[t][c1 * xd[t]]),
                                                  static_cast<T>(gr[t][c0 * gd[t]]), static_cast<T>(gr[t][c1 * gd[t]]),
                                                  c, s));
    for (int64_t a = 0; a < p.axes; ++a) acc[a] += d * static_cast<double>(t_pos[a]);
  }
  for (int64_t a = 0; a < kRopeMaxAxes; ++a) red[a][threadIdx.x] = acc[a];
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride)
      for (int64_t a = 0; a < kRopeMaxAxes; ++a) red[a][threadIdx.x] += red[a][threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0)
    for (int64_t a = 0; a < p.axes; ++a) grad_freqs[rope_freq_index(p, a, hf, j)] = static_cast<T>(red[a][0]);
}

}  // namespace

void rope_2d_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& positions, const at::Tensor& freqs,
                  at::Tensor& out_q, at::Tensor& out_k, const RopeParams& p) {
  const c10::cuda::CUDAGuard guard(q.device());
  const int64_t threads_total = p.tokens * p.heads * (p.head_dim / 2);
  const int64_t blocks = (threads_total + kThreads - 1) / kThreads;
  TORCH_CHECK(blocks <= 2147483647LL, "posext.rope_2d: too many tokens for one launch (", blocks, " blocks)");
  const int64_t batch_blocks =
      std::min<int64_t>(65535, std::max<int64_t>(1, (p.batch + kBatchPerThread - 1) / kBatchPerThread));
  const dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>(batch_blocks));
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q.scalar_type(), "posext_rope_2d_cuda", [&] {
    using T = at::opmath_type<scalar_t>;
    rope_2d_kernel<scalar_t, T><<<grid, kThreads, 0, stream>>>(
        q.const_data_ptr<scalar_t>(), k.const_data_ptr<scalar_t>(), out_q.data_ptr<scalar_t>(),
        out_k.data_ptr<scalar_t>(), positions.const_data_ptr<T>(), freqs.const_data_ptr<T>(), p);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void rope_2d_freqs_backward_cuda(const at::Tensor& grad_q, const at::Tensor& grad_k, const at::Tensor& q,
                                 const at::Tensor& k, const at::Tensor& positions, const at::Tensor& freqs,
                                 at::Tensor& grad_freqs, const RopeParams& p) {
  const c10::cuda::CUDAGuard guard(q.device());
  const int64_t blocks = p.freq_heads * p.rotary_pairs;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q.scalar_type(), "posext_rope_2d_bwd_cuda", [&] {
    using T = at::opmath_type<scalar_t>;
    rope_2d_freqs_backward_kernel<scalar_t, T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
        grad_q.const_data_ptr<scalar_t>(), grad_k.const_data_ptr<scalar_t>(), q.const_data_ptr<scalar_t>(),
        k.const_data_ptr<scalar_t>(), positions.const_data_ptr<T>(), freqs.const_data_ptr<T>(),
        grad_freqs.data_ptr<T>(), p);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

TORCH_LIBRARY_IMPL(posext, CUDA, m) { RopeOps<rope_2d_cuda, rope_2d_freqs_backward_cuda>::register_kernels(m); }

}  // namespace posext
