// CUDA resampling, one launch per call. A block owns one token of the result and its threads walk the
// channels, so every load and store is coalesced along C. Taps (forward) or transposed weights (backward)
// come from resample.h into shared memory once per block; sums run x first, then y, in opmath T.
// The backward gathers per input token: deterministic, no atomics.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "resample_op.h"

namespace posext {
namespace {

int block_threads(int64_t channels) {
  return static_cast<int>(std::min<int64_t>(256, std::max<int64_t>(32, (channels + 31) / 32 * 32)));
}

template <typename scalar_t>
__device__ void copy_prefix_row(const scalar_t* __restrict__ from, scalar_t* __restrict__ to, int64_t C) {
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) to[c] = from[c];
}

// Channel c of result token t of table entry b: stored, or (fused add) added to x in every batch entry it feeds,
// rounded to scalar_t first as an unfused caller's table would be.
template <typename scalar_t, typename T>
__device__ void store_value(T v, int64_t b, int64_t t, int64_t c, scalar_t* __restrict__ out,
                            const scalar_t* __restrict__ add, const ResampleParams& p) {
  if (add == nullptr) {
    out[b * p.out_batch_stride + t * p.out_token_stride + c] = static_cast<scalar_t>(v);
    return;
  }
  const T rounded = static_cast<T>(static_cast<scalar_t>(v));
  int64_t first, last;
  add_targets(p, b, first, last);
  for (int64_t xb = first; xb < last; ++xb)
    out[xb * p.out_batch_stride + t * p.out_token_stride + c] =
        static_cast<scalar_t>(static_cast<T>(add[xb * p.add_batch_stride + t * p.add_token_stride + c]) + rounded);
}

// grid.x: B * (P + H_out * W_out) result tokens. Shared: idx_y[Ky], idx_x[Kx] (int64), w_y[Ky], w_x[Kx] (T).
// `add`: nullptr, or x of resample_add (then out has x's batch, see ResampleParams::add_batch).
template <typename scalar_t, typename T>
__global__ void resample_forward_kernel(const scalar_t* __restrict__ in, scalar_t* __restrict__ out,
                                        const scalar_t* __restrict__ add, const ResampleParams p) {
  extern __shared__ int64_t smem_forward[];
  __shared__ int taps_y, taps_x;
  const int64_t P = p.num_prefix_tokens, C = p.channels, W_in = p.x.in_size, W_out = p.x.out_size;
  const int64_t tokens_out = P + p.y.out_size * W_out;
  const int64_t b = blockIdx.x / tokens_out, t = blockIdx.x - b * tokens_out;
  const scalar_t* src = in + b * p.in_batch_stride;
  if (t < P) {
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
      store_value<scalar_t, T>(static_cast<T>(src[t * p.in_token_stride + c]), b, t, c, out, add, p);
    return;
  }
  const int64_t oy = (t - P) / W_out, ox = (t - P) - oy * W_out;
  int64_t* idx_y = smem_forward;
  int64_t* idx_x = idx_y + p.y.max_taps;
  T* w_y = reinterpret_cast<T*>(idx_x + p.x.max_taps);
  T* w_x = w_y + p.y.max_taps;
  if (threadIdx.x == 0) taps_y = axis_taps<T>(p.y, p.mode, p.antialias, p.align_corners, oy, idx_y, w_y);
  if (threadIdx.x == (blockDim.x > 1 ? 1 : 0))
    taps_x = axis_taps<T>(p.x, p.mode, p.antialias, p.align_corners, ox, idx_x, w_x);
  __syncthreads();
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    T acc = T(0);
    for (int j = 0; j < taps_y; ++j) {
      const scalar_t* row = src + (P + idx_y[j] * W_in) * p.in_token_stride + c;
      T r = T(0);
      for (int k = 0; k < taps_x; ++k) r += w_x[k] * static_cast<T>(row[idx_x[k] * p.in_token_stride]);
      acc += w_y[j] * r;
    }
    store_value<scalar_t, T>(acc, b, t, c, out, add, p);
  }
}

// grid.x: B * (P + H_in * W_in) gradient tokens. Shared: w_y[range_y], w_x[range_x] (T), the transposed weights
// of the output rows/columns that reach this input token.
template <typename scalar_t, typename T>
__global__ void resample_backward_kernel(const scalar_t* __restrict__ grad_out, scalar_t* __restrict__ grad_in,
                                         const ResampleParams p, int64_t max_range_y) {
  extern __shared__ unsigned char smem_backward[];
  const int64_t P = p.num_prefix_tokens, C = p.channels, W_in = p.x.in_size, W_out = p.x.out_size;
  const int64_t tokens_in = P + p.y.in_size * W_in;
  const int64_t b = blockIdx.x / tokens_in, t = blockIdx.x - b * tokens_in;
  scalar_t* dst = grad_in + b * p.out_batch_stride + t * p.out_token_stride;
  const scalar_t* src = grad_out + b * p.in_batch_stride;
  if (t < P) return copy_prefix_row(src + t * p.in_token_stride, dst, C);
  const int64_t iy = (t - P) / W_in, ix = (t - P) - iy * W_in;
  int64_t lo_y, hi_y, lo_x, hi_x;
  outputs_reaching<T>(p.y, p.mode, p.antialias, p.align_corners, iy, lo_y, hi_y);
  outputs_reaching<T>(p.x, p.mode, p.antialias, p.align_corners, ix, lo_x, hi_x);
  T* w_y = reinterpret_cast<T*>(smem_backward);
  T* w_x = w_y + max_range_y;
  for (int64_t r = threadIdx.x; r <= hi_y - lo_y; r += blockDim.x)
    w_y[r] = transposed_weight<T>(p.y, p.mode, p.antialias, p.align_corners, lo_y + r, iy);
  for (int64_t r = threadIdx.x; r <= hi_x - lo_x; r += blockDim.x)
    w_x[r] = transposed_weight<T>(p.x, p.mode, p.antialias, p.align_corners, lo_x + r, ix);
  __syncthreads();
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    T acc = T(0);
    for (int64_t oy = lo_y; oy <= hi_y; ++oy) {
      const T wy = w_y[oy - lo_y];
      if (wy == T(0)) continue;
      const scalar_t* row = src + (P + oy * W_out) * p.in_token_stride + c;
      T r = T(0);
      for (int64_t ox = lo_x; ox <= hi_x; ++ox) {
        const T wx = w_x[ox - lo_x];
        if (wx != T(0)) r += wx * static_cast<T>(row[ox * p.in_token_stride]);
      }
      acc += wy * r;
    }
    dst[c] = static_cast<scalar_t>(acc);
  }
}

template <typename T>
int64_t max_range(const ResampleAxis& a, const ResampleParams& p) {
  int64_t longest = 1;
  for (int64_t i = 0; i < a.in_size; ++i) {
    int64_t lo, hi;
    outputs_reaching<T>(a, p.mode, p.antialias, p.align_corners, i, lo, hi);
    longest = std::max(longest, hi - lo + 1);
  }
  return longest;
}

void check_grid(int64_t blocks, const char* op) {
  TORCH_CHECK(blocks <= 2147483647LL, op, ": too many tokens for one launch (", blocks, ")");
}

void check_shared(size_t bytes, const char* op) {
  TORCH_CHECK(bytes <= 48 * 1024, op, ": the resampling window needs ", bytes,
              " bytes of shared memory per block (limit 48 KiB); resample in two steps");
}

}  // namespace

void resample_forward_cuda(const at::Tensor& input, at::Tensor& out, const ResampleParams& p,
                           const at::Tensor& addend) {
  const c10::cuda::CUDAGuard guard(input.device());
  const int64_t blocks = p.batch * (p.num_prefix_tokens + p.y.out_size * p.x.out_size);
  check_grid(blocks, "posext.resample");
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "posext_resample_cuda", [&] {
    using T = at::opmath_type<scalar_t>;
    const size_t smem = (p.y.max_taps + p.x.max_taps) * (sizeof(int64_t) + sizeof(T));
    check_shared(smem, "posext.resample");
    resample_forward_kernel<scalar_t, T><<<blocks, block_threads(p.channels), smem, stream>>>(
        input.const_data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
        addend.defined() ? addend.const_data_ptr<scalar_t>() : nullptr, p);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void resample_backward_cuda(const at::Tensor& grad_out, at::Tensor& grad_in, const ResampleParams& p) {
  const c10::cuda::CUDAGuard guard(grad_out.device());
  const int64_t blocks = p.batch * (p.num_prefix_tokens + p.y.in_size * p.x.in_size);
  check_grid(blocks, "posext.resample_backward");
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_out.scalar_type(), "posext_resample_bwd_cuda", [&] {
    using T = at::opmath_type<scalar_t>;
    const int64_t range_y = max_range<T>(p.y, p), range_x = max_range<T>(p.x, p);
    const size_t smem = (range_y + range_x) * sizeof(T);
    check_shared(smem, "posext.resample_backward");
    resample_backward_kernel<scalar_t, T><<<blocks, block_threads(p.channels), smem, stream>>>(
        grad_out.const_data_ptr<scalar_t>(), grad_in.data_ptr<scalar_t>(), p, range_y);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

TORCH_LIBRARY_IMPL(posext, CUDA, m) { ResampleOps<resample_forward_cuda, resample_backward_cuda>::register_kernels(m); }

}  // namespace posext
