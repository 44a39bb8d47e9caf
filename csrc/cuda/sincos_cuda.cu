// CUDA sin-cos tables, one launch each. 2D: a thread owns (channel c, position q along c's axis), computes
// the one float64 value and writes it to every token on that grid line, so each sin/cos is evaluated once
// per (channel, position) and the rest is stores; adjacent threads write adjacent channels (coalesced).
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "sincos_op.h"

namespace posext {
namespace {

constexpr int kThreads = 128;

// grid: x over channel blocks; y strides over the `lines` q: positions 0 .. max(H, W) - 1 along each channel's
// axis, then (when P > 0) one more line that zeroes the prefix rows.
template <typename scalar_t>
__global__ void sincos_2d_kernel(scalar_t* __restrict__ out, const SinCosParams p, int64_t lines) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= p.embed_dim) return;
  const int64_t D = p.embed_dim, H = p.height, W = p.width;
  const bool along_x = band_along_x(p, band_of(p, c));
  const double omega = channel_omega(p, c);
  scalar_t* grid = out + p.num_prefix_tokens * D + c;
  for (int64_t q = blockIdx.y; q < lines; q += gridDim.y) {
    if (p.num_prefix_tokens > 0 && q == lines - 1) {
      for (int64_t t = 0; t < p.num_prefix_tokens; ++t) out[t * D + c] = scalar_t(0);
      continue;
    }
    if (q >= (along_x ? W : H)) continue;
    const scalar_t v = static_cast<scalar_t>(channel_value(p, c, omega, static_cast<double>(q)));
    if (along_x) {
      for (int64_t y = 0; y < H; ++y) grid[(y * W + q) * D] = v;
    } else {
      scalar_t* line = grid + q * W * D;
      for (int64_t x = 0; x < W; ++x) line[x * D] = v;
    }
  }
}

// grid: x over channel blocks, y over chunks of positions; omega is computed once per thread.
template <typename scalar_t, typename pos_t>
__global__ void sincos_1d_kernel(scalar_t* __restrict__ out, const pos_t* __restrict__ positions, int64_t pos_stride,
                                 int64_t M, int64_t rows_per_block, const SinCosParams p) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= p.embed_dim) return;
  const double omega = channel_omega(p, c);
  const int64_t m_end = min(M, (static_cast<int64_t>(blockIdx.y) + 1) * rows_per_block);
  for (int64_t m = blockIdx.y * rows_per_block; m < m_end; ++m) {
    const double pos = static_cast<double>(positions[m * pos_stride]);
    out[m * p.embed_dim + c] = static_cast<scalar_t>(channel_value(p, c, omega, pos));
  }
}

}  // namespace

void sincos_2d_cuda(at::Tensor& out, const SinCosParams& p) {
  const int64_t lines = std::max(p.height, p.width) + (p.num_prefix_tokens > 0 ? 1 : 0);
  const c10::cuda::CUDAGuard guard(out.device());
  const dim3 grid((p.embed_dim + kThreads - 1) / kThreads, static_cast<unsigned>(std::min<int64_t>(lines, 65535)));
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "posext_sincos_2d_cuda", [&] {
    sincos_2d_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(out.data_ptr<scalar_t>(), p, lines);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void sincos_1d_cuda(at::Tensor& out, const at::Tensor& positions, const SinCosParams& p) {
  const int64_t M = positions.size(0);
  if (M == 0) return;
  const c10::cuda::CUDAGuard guard(out.device());
  const int64_t rows_per_block = std::max<int64_t>(32, (M + 65534) / 65535);  // grid.y stays <= 65535
  const int64_t row_blocks = (M + rows_per_block - 1) / rows_per_block;
  const dim3 grid((p.embed_dim + kThreads - 1) / kThreads, row_blocks);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "posext_sincos_1d_cuda", [&] {
    using out_t = scalar_t;
    AT_DISPATCH_ALL_TYPES_AND2(at::kHalf, at::kBFloat16, positions.scalar_type(), "posext_sincos_1d_cuda_pos", [&] {
      sincos_1d_kernel<out_t, scalar_t><<<grid, kThreads, 0, stream>>>(
          out.data_ptr<out_t>(), positions.const_data_ptr<scalar_t>(), positions.stride(0), M, rows_per_block, p);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

TORCH_LIBRARY_IMPL(posext, CUDA, m) { SinCosOps<sincos_2d_cuda, sincos_1d_cuda>::register_kernels(m); }

}  // namespace posext
