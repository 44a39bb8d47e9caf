// CUDA factorized positions, one launch each: a block per token (forward) or per table row (gradient), threads
// along channels (coalesced); the gradient gathers its row's segment in a fixed order (no atomics).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "factorized_op.h"

namespace posext {
namespace {

int threads_for(int64_t channels) {
  return static_cast<int>(std::min<int64_t>(256, std::max<int64_t>(32, (channels + 31) / 32 * 32)));
}

template <typename scalar_t, typename T>
__global__ void factorized_add_kernel(const scalar_t* __restrict__ x, const T* __restrict__ pos,
                                      const scalar_t* __restrict__ ty, const scalar_t* __restrict__ tx,
                                      scalar_t* __restrict__ out, const FactorizedParams p) {
  const int64_t r = blockIdx.x, b = r / p.tokens, s = r - b * p.tokens;
  const scalar_t* xr = x + b * p.x_batch_stride + s * p.x_token_stride;
  scalar_t* o = out + r * p.channels;
  const T px = pos[2 * s], py = pos[2 * s + 1];
  if (py < T(0) || px < T(0)) {
    for (int64_t c = threadIdx.x; c < p.channels; c += blockDim.x) o[c] = xr[c];
    return;
  }
  const LerpTaps<T> lty = lerp_taps<T>(py, p.len_y), ltx = lerp_taps<T>(px, p.len_x);
  for (int64_t c = threadIdx.x; c < p.channels; c += blockDim.x)
    o[c] = static_cast<scalar_t>(static_cast<T>(xr[c]) + factorized_term<T>(p, ty, tx, lty, ltx, c));
}

template <typename scalar_t, typename T>
__global__ void factorized_table_grad_kernel(const scalar_t* __restrict__ g, const int64_t* __restrict__ off,
                                             const int64_t* __restrict__ tok, const T* __restrict__ w,
                                             scalar_t* __restrict__ out, int64_t B, int64_t bs, int64_t ts,
                                             int64_t channel_offset, int64_t C) {
  const int64_t r = blockIdx.x;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    T acc = T(0);
    for (int64_t e = off[r]; e < off[r + 1]; ++e)
      for (int64_t b = 0; b < B; ++b) acc += w[e] * static_cast<T>(g[b * bs + tok[e] * ts + channel_offset + c]);
    out[r * C + c] = static_cast<scalar_t>(acc);
  }
}

}  // namespace

void factorized_add_cuda(const at::Tensor& x, const at::Tensor& positions, const at::Tensor& table_y,
                         const at::Tensor& table_x, at::Tensor& out, const FactorizedParams& p) {
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t blocks = p.batch * p.tokens;
  TORCH_CHECK(blocks <= 2147483647LL, "posext.factorized_add: too many tokens for one launch");
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "posext_factorized_cuda", [&] {
    using T = at::opmath_type<scalar_t>;
    factorized_add_kernel<scalar_t, T><<<blocks, threads_for(p.channels), 0, stream>>>(
        x.const_data_ptr<scalar_t>(), positions.const_data_ptr<T>(), table_y.const_data_ptr<scalar_t>(),
        table_x.defined() ? table_x.const_data_ptr<scalar_t>() : nullptr, out.data_ptr<scalar_t>(), p);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void factorized_table_grad_cuda(const at::Tensor& grad, const at::Tensor& offsets, const at::Tensor& tokens,
                                const at::Tensor& weights, int64_t channel_offset, at::Tensor& out) {
  const c10::cuda::CUDAGuard guard(grad.device());
  const int64_t rows = out.size(0), C = out.size(1);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "posext_factorized_grad_cuda", [&] {
    using T = at::opmath_type<scalar_t>;
    factorized_table_grad_kernel<scalar_t, T><<<rows, threads_for(C), 0, stream>>>(
        grad.const_data_ptr<scalar_t>(), offsets.const_data_ptr<int64_t>(), tokens.const_data_ptr<int64_t>(),
        weights.const_data_ptr<T>(), out.data_ptr<scalar_t>(), grad.size(0), grad.stride(0), grad.stride(1),
        channel_offset, C);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

TORCH_LIBRARY_IMPL(posext, CUDA, m) { FactorizedOps<factorized_add_cuda, factorized_table_grad_cuda>::register_kernels(m); }

}  // namespace posext
