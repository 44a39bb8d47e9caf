#pragma once
// sincos_3d (and its out= form): the checked calls (sincos3d_op.cpp) and the per-device kernels. Each device's
// kernel file registers SinCos3dOps<its kernel> for its dispatch key; sincos_3d itself has no tensor argument
// to dispatch on, so sincos3d_op.cpp makes its result and calls sincos_3d_out.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "checks.h"
#include "sincos3d.h"

namespace posext {

// Kernel: out contiguous [P + T*H*W, D].
using SinCos3d = void (*)(at::Tensor& out, const SinCos3dParams& p);

void sincos_3d_cpu(at::Tensor& out, const SinCos3dParams& p);
void sincos_3d_cuda(at::Tensor& out, const SinCos3dParams& p);

// Builds and checks the table parameters. `bands`: per band three ints (axis * 2 + is_cos, width, F), the
// widths summing to embed_dim; empty for the interleaved layout. `scales`: the position divisors of t, h, w.
SinCos3dParams sincos_3d_params(int64_t embed_dim, int64_t depth, int64_t height, int64_t width,
                                int64_t num_prefix_tokens, double temperature, at::IntArrayRef bands,
                                at::ArrayRef<double> scales, bool float32_positions);
// Checks `out` (dtype, shape, contiguity).
void check_sincos_3d_out(const at::Tensor& out, const SinCos3dParams& p);

// The tensor-dispatched op on one device, given its kernel (the signature is the schema of bindings.cpp).
template <SinCos3d Fill>
struct SinCos3dOps {
  static void sincos_3d_out(int64_t embed_dim, int64_t depth, int64_t height, int64_t width,
                            int64_t num_prefix_tokens, double temperature, at::IntArrayRef bands,
                            at::ArrayRef<double> scales, bool float32_positions, const at::Tensor& out) {
    const SinCos3dParams p = sincos_3d_params(embed_dim, depth, height, width, num_prefix_tokens, temperature,
                                              bands, scales, float32_positions);
    check_sincos_3d_out(out, p);
    at::Tensor result = out;
    if (result.numel() > 0) Fill(result, p);
  }
  static void register_kernels(torch::Library& m) { m.impl("sincos_3d_out", &sincos_3d_out); }
};

}  // namespace posext
