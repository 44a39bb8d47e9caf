// CUDA 3-D sin-cos tables, one launch. A thread owns (channel c, coordinate q along c's axis), computes that
// one float64 value and writes it to the tokens of its grid line, so each sin/cos is evaluated once per
// (channel, coordinate) (once per element in the interleaved layout, whose axis is the token index); adjacent
// threads write adjacent channels (coalesced). grid.z splits long lines (an axis of length 1 owns every token)
// into chunks, so no thread stores more than kLineChunk values.
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "sincos3d_op.h"

namespace posext {
namespace {

constexpr int kThreads = 128;
constexpr int64_t kLineChunk = 256;
constexpr int64_t kMaxGridYZ = 65535;

// The tokens on the line q of `axis`: how many, and the i-th of them.
__device__ __forceinline__ int64_t line_tokens(const SinCos3dParams& p, int axis) {
  const int64_t T = p.depth, H = p.height, W = p.width;
  switch (axis) {
    case kAxis3dT: return H * W;
    case kAxis3dH: return T * W;
    case kAxis3dW: return T * H;
    default: return 1;
  }
}

__device__ __forceinline__ int64_t line_token(const SinCos3dParams& p, int axis, int64_t q, int64_t i) {
  const int64_t H = p.height, W = p.width;
  switch (axis) {
    case kAxis3dT: return q * H * W + i;
    case kAxis3dH: return ((i / W) * H + q) * W + i % W;
    case kAxis3dW: return i * W + q;
    default: return q;
  }
}

// grid: x over channel blocks; y strides over the `lines` q (coordinates 0 .. longest axis - 1, then, when
// P > 0, one line that zeroes the prefix rows); z strides over chunks of kLineChunk tokens of a line.
template <typename scalar_t>
__global__ void sincos_3d_kernel(scalar_t* __restrict__ out, const SinCos3dParams p, int64_t lines,
                                 int64_t chunks) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= p.embed_dim) return;
  const int64_t D = p.embed_dim;
  const Channel3d ch = channel3d(p, c);
  const int64_t len = axis3d_length(p, ch.axis), per_line = line_tokens(p, ch.axis);
  scalar_t* grid = out + p.num_prefix_tokens * D + c;
  for (int64_t q = blockIdx.y; q < lines; q += gridDim.y) {
    for (int64_t z = blockIdx.z; z < chunks; z += gridDim.z) {
      if (p.num_prefix_tokens > 0 && q == lines - 1) {
        const int64_t end = min(p.num_prefix_tokens, (z + 1) * kLineChunk);
        for (int64_t t = z * kLineChunk; t < end; ++t) out[t * D + c] = scalar_t(0);
        continue;
      }
      if (q >= len || z * kLineChunk >= per_line) continue;
      const scalar_t v = static_cast<scalar_t>(channel3d_value(ch, position3d(p, ch.axis, q)));
      const int64_t end = min(per_line, (z + 1) * kLineChunk);
      for (int64_t i = z * kLineChunk; i < end; ++i) grid[line_token(p, ch.axis, q, i) * D] = v;
    }
  }
}

}  // namespace

void sincos_3d_cuda(at::Tensor& out, const SinCos3dParams& p) {
  int64_t longest = 0, most_tokens = p.num_prefix_tokens;
  const int64_t T = p.depth, H = p.height, W = p.width;
  if (p.num_bands == 0) {
    longest = T * H * W;
    most_tokens = std::max<int64_t>(most_tokens, 1);
  } else {
    for (int b = 0; b < p.num_bands; ++b) {
      const int axis = p.band_axis[b];
      longest = std::max(longest, axis == kAxis3dT ? T : axis == kAxis3dH ? H : W);
      most_tokens = std::max(most_tokens, axis == kAxis3dT ? H * W : axis == kAxis3dH ? T * W : T * H);
    }
  }
  const int64_t lines = longest + (p.num_prefix_tokens > 0 ? 1 : 0);
  const int64_t chunks = (most_tokens + kLineChunk - 1) / kLineChunk;
  const c10::cuda::CUDAGuard guard(out.device());
  const dim3 grid((p.embed_dim + kThreads - 1) / kThreads, static_cast<unsigned>(std::min(lines, kMaxGridYZ)),
                  static_cast<unsigned>(std::min(chunks, kMaxGridYZ)));
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "posext_sincos_3d_cuda", [&] {
    sincos_3d_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(out.data_ptr<scalar_t>(), p, lines, chunks);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

TORCH_LIBRARY_IMPL(posext, CUDA, m) { SinCos3dOps<sincos_3d_cuda>::register_kernels(m); }

}  // namespace posext
