// CUDA varlen resampling, one launch per call, forward and backward. Every block reads its image's (t, h, w)
// from grid_sizes on the device and builds that image's axes and taps (resample.h) itself: no host loop over
// images and no host read of the sizes. Forward: a block per result row, threads along the channels (coalesced),
// taps in shared memory, sums x first, then y, in opmath T. Backward: a block per table cell and channel slice;
// it gathers, image after image in order, the gradient rows whose taps reach the cell: deterministic, no atomics.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/macros/Macros.h>

#include <algorithm>

#include "varlen_op.h"

namespace posext {
namespace {

constexpr int kChannelsPerThread = 4;  // backward: one weight computation serves this many channels
constexpr int kCachedWeights = 32;     // backward: transposed x weights kept per image (else recomputed)

int block_threads(int64_t work) {
  return static_cast<int>(std::min<int64_t>(256, std::max<int64_t>(32, (work + 31) / 32 * 32)));
}

__device__ VarlenImage load_image(const int64_t* __restrict__ sizes, int64_t b) {
  return VarlenImage{sizes[3 * b], sizes[3 * b + 1], sizes[3 * b + 2]};
}

// grid.x: result rows. Shared: idx_y[ky], idx_x[kx] (int64), w_y[ky], w_x[kx] (T).
template <typename scalar_t, typename T>
__global__ void varlen_forward_kernel(const scalar_t* __restrict__ table, scalar_t* __restrict__ out,
                                      const scalar_t* __restrict__ add, const int64_t* __restrict__ sizes,
                                      const int64_t* __restrict__ offsets, const VarlenParams p, int ky, int kx) {
  extern __shared__ int64_t smem_varlen[];
  __shared__ int taps_y, taps_x;
  __shared__ bool padding;
  const int64_t row = blockIdx.x, C = p.channels, P = p.num_prefix_tokens, W_in = p.old_w;
  int64_t* idx_y = smem_varlen;
  int64_t* idx_x = idx_y + ky;
  T* w_y = reinterpret_cast<T*>(idx_x + kx);
  T* w_x = w_y + ky;
  if (threadIdx.x == 0) {
    int64_t b, local;
    locate_row(p, offsets, row, b, local);
    const VarlenImage g = load_image(sizes, b);
    const bool valid = image_is_valid(g, p);
    CUDA_KERNEL_ASSERT_MSG(valid, "posext.resample_varlen: an image of grid_sizes has a size < 1, one merge_size "
                                  "does not divide, or more tokens than max_length");
    padding = !valid || local >= image_tokens(g);
    if (!padding) {
      int64_t oy, ox;
      row_position(local, g, p.merge, oy, ox);
      const ResampleAxis ay = varlen_axis<T>(p.old_h, g.h, p), ax = varlen_axis<T>(p.old_w, g.w, p);
      taps_y = axis_taps<T>(ay, p.mode, p.antialias, p.align_corners, oy, idx_y, w_y);
      taps_x = axis_taps<T>(ax, p.mode, p.antialias, p.align_corners, ox, idx_x, w_x);
    }
  }
  __syncthreads();
  scalar_t* dst = out + row * C;
  if (padding) {
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) dst[c] = add ? add[row * C + c] : scalar_t(0);
    return;
  }
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    T acc = T(0);
    for (int j = 0; j < taps_y; ++j) {
      const scalar_t* src = table + (P + idx_y[j] * W_in) * C + c;
      T r = T(0);
      for (int k = 0; k < taps_x; ++k) r += w_x[k] * static_cast<T>(src[idx_x[k] * C]);
      acc += w_y[j] * r;
    }
    if (add) {
      dst[c] = static_cast<scalar_t>(static_cast<T>(add[row * C + c]) + static_cast<T>(static_cast<scalar_t>(acc)));
    } else {
      dst[c] = static_cast<scalar_t>(acc);
    }
  }
}

// grid.x: P + old_h*old_w table rows (prefix rows: zeros), grid.y: channel slices of blockDim * kChannelsPerThread.
template <typename scalar_t, typename T>
__global__ void varlen_backward_kernel(const scalar_t* __restrict__ grad, scalar_t* __restrict__ out,
                                       const int64_t* __restrict__ sizes, const int64_t* __restrict__ offsets,
                                       const VarlenParams p) {
  const int64_t C = p.channels, P = p.num_prefix_tokens, cell_row = blockIdx.x;
  const int64_t c0 = static_cast<int64_t>(blockIdx.y) * blockDim.x * kChannelsPerThread + threadIdx.x;
  T acc[kChannelsPerThread];
#pragma unroll
  for (int k = 0; k < kChannelsPerThread; ++k) acc[k] = T(0);
  if (cell_row >= P) {
    const int64_t cell = cell_row - P, ry = cell / p.old_w, rx = cell - ry * p.old_w;
    T w_cache[kCachedWeights];
    for (int64_t b = 0; b < p.batch; ++b) {
      const VarlenImage g = load_image(sizes, b);
      const bool valid = image_is_valid(g, p);
      CUDA_KERNEL_ASSERT_MSG(valid, "posext.resample_varlen_backward: an image of grid_sizes has a size < 1, one "
                                    "merge_size does not divide, or more tokens than max_length");
      if (!valid) continue;
      const ResampleAxis ay = varlen_axis<T>(p.old_h, g.h, p), ax = varlen_axis<T>(p.old_w, g.w, p);
      int64_t lo_y, hi_y, lo_x, hi_x;
      outputs_reaching<T>(ay, p.mode, p.antialias, p.align_corners, ry, lo_y, hi_y);
      outputs_reaching<T>(ax, p.mode, p.antialias, p.align_corners, rx, lo_x, hi_x);
      if (hi_y < lo_y || hi_x < lo_x) continue;
      const bool cached = hi_x - lo_x < kCachedWeights;
      if (cached)
        for (int64_t ox = lo_x; ox <= hi_x; ++ox)
          w_cache[ox - lo_x] = transposed_weight<T>(ax, p.mode, p.antialias, p.align_corners, ox, rx);
      const int64_t base = is_padded(p) ? b * p.max_length : offsets[b], frame = g.h * g.w;
      for (int64_t oy = lo_y; oy <= hi_y; ++oy) {
        const T wy = transposed_weight<T>(ay, p.mode, p.antialias, p.align_corners, oy, ry);
        if (wy == T(0)) continue;
        for (int64_t f = 0; f < g.t; ++f) {
          T r[kChannelsPerThread];
          bool any = false;
          for (int64_t ox = lo_x; ox <= hi_x; ++ox) {
            const T wx = cached ? w_cache[ox - lo_x]
                                : transposed_weight<T>(ax, p.mode, p.antialias, p.align_corners, ox, rx);
            if (wx == T(0)) continue;
            const scalar_t* src = grad + (base + f * frame + position_row(oy, ox, g, p.merge)) * C;
#pragma unroll
            for (int k = 0; k < kChannelsPerThread; ++k) {
              const int64_t c = c0 + k * static_cast<int64_t>(blockDim.x);
              const T v = c < C ? wx * static_cast<T>(src[c]) : T(0);
              r[k] = any ? r[k] + v : v;
            }
            any = true;
          }
          if (any) {
#pragma unroll
            for (int k = 0; k < kChannelsPerThread; ++k) acc[k] += wy * r[k];
          }
        }
      }
    }
  }
  scalar_t* dst = out + cell_row * C;
#pragma unroll
  for (int k = 0; k < kChannelsPerThread; ++k) {
    const int64_t c = c0 + k * static_cast<int64_t>(blockDim.x);
    if (c < C) dst[c] = static_cast<scalar_t>(acc[k]);
  }
}

void check_grid(int64_t blocks, const char* op) {
  TORCH_CHECK(blocks <= 2147483647LL, op, ": too many rows for one launch (", blocks, ")");
}

}  // namespace

void varlen_forward_cuda(const VarlenCall& c) {
  const char* op = c.p.add ? "posext.resample_varlen_add" : "posext.resample_varlen";
  const c10::cuda::CUDAGuard guard(c.in.device());
  check_grid(c.p.rows, op);
  const int ky = static_cast<int>(std::min<int64_t>(varlen_taps_bound(c.p.old_h), 1 << 20));
  const int kx = static_cast<int>(std::min<int64_t>(varlen_taps_bound(c.p.old_w), 1 << 20));
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.in.scalar_type(), "posext_varlen_cuda", [&] {
    using T = at::opmath_type<scalar_t>;
    const size_t smem = static_cast<size_t>(ky + kx) * (sizeof(int64_t) + sizeof(T));
    TORCH_CHECK(smem <= 48 * 1024, op, ": a table of ", c.p.old_h, "x", c.p.old_w, " needs ", smem,
                " bytes of shared memory per block for its taps (limit 48 KiB)");
    varlen_forward_kernel<scalar_t, T><<<c.p.rows, block_threads(c.p.channels), smem, stream>>>(
        c.in.const_data_ptr<scalar_t>(), c.out.data_ptr<scalar_t>(),
        c.p.add ? c.addend.const_data_ptr<scalar_t>() : nullptr, c.grid_sizes.const_data_ptr<int64_t>(),
        is_padded(c.p) ? nullptr : c.offsets.const_data_ptr<int64_t>(), c.p, ky, kx);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void varlen_backward_cuda(const VarlenCall& c) {
  const char* op = "posext.resample_varlen_backward";
  const c10::cuda::CUDAGuard guard(c.in.device());
  const int64_t table_rows = c.p.num_prefix_tokens + c.p.old_h * c.p.old_w;
  check_grid(table_rows, op);
  const int threads = block_threads((c.p.channels + kChannelsPerThread - 1) / kChannelsPerThread);
  const int64_t per_block = static_cast<int64_t>(threads) * kChannelsPerThread;
  const int64_t slices = (c.p.channels + per_block - 1) / per_block;
  TORCH_CHECK(slices <= 65535, op, ": too many channels for one launch (", c.p.channels, ")");
  const dim3 blocks(static_cast<unsigned>(table_rows), static_cast<unsigned>(slices));
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.in.scalar_type(), "posext_varlen_bwd_cuda", [&] {
    using T = at::opmath_type<scalar_t>;
    varlen_backward_kernel<scalar_t, T><<<blocks, threads, 0, stream>>>(
        c.in.const_data_ptr<scalar_t>(), c.out.data_ptr<scalar_t>(), c.grid_sizes.const_data_ptr<int64_t>(),
        is_padded(c.p) ? nullptr : c.offsets.const_data_ptr<int64_t>(), c.p);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

TORCH_LIBRARY_IMPL(posext, CUDA, m) { VarlenOps<varlen_forward_cuda, varlen_backward_cuda>::register_kernels(m); }

}  // namespace posext
